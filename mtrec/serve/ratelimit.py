"""Per-key rate limits: token buckets, in one process or shared by a server's workers.

Each worker of ``mtrec serve --workers N`` is its own process; with a bucket each, a key
limited to ``rate`` could make ``N * rate`` requests a second.  :class:`SharedBuckets` keeps
the buckets in a small file every worker maps (``mtrec serve`` makes it when it starts more
than one worker) and takes a token under a file lock, so the limit holds across them.

>>> refill(tokens=0.0, last=0.0, now=0.25, rate=2.0, burst=3.0)  # half a token: wait 0.25 s
(0.5, 0.25)
>>> refill(tokens=2.5, last=0.0, now=10.0, rate=2.0, burst=3.0)  # full, one taken
(2.0, 0.0)
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path


def refill(tokens: float, last: float, now: float, rate: float,
           burst: float) -> tuple[float, float]:
    """The tokens left after refilling since ``last`` and taking one if there is one, and
    the seconds to wait (0: one was taken)."""
    tokens = min(burst, tokens + max(0.0, now - last) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0
    return tokens, (1.0 - tokens) / rate


@dataclass
class Bucket:
    """A token bucket in this process: ``burst`` tokens, refilled at ``rate`` per second."""

    rate: float
    burst: float
    tokens: float = field(default=-1.0)  # below 0: full at the first take
    last: float = 0.0

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        if self.tokens < 0:
            self.tokens, self.last = self.burst, now
        self.tokens, wait = refill(self.tokens, self.last, now, self.rate, self.burst)
        self.last = max(self.last, now)
        return wait


SLOT = struct.Struct("<16sddd")  # key id (16 bytes of its hash; zeros: free), started, tokens, last
SLOTS = 4096  # a fixed table: workers that read different key files still agree on it


class SharedBuckets:
    """Token buckets in the file ``path``, shared by a server's workers; ``limits`` maps a
    key's hash (hex SHA-256) to its ``(rate, burst)``.  Each slot holds the key it belongs
    to, found by open addressing from the hash, so workers that loaded different key files
    (one restarted after a key was added) never take from another key's bucket.  Times are
    ``time.monotonic()``, one clock for every process."""

    def __init__(self, path: str | Path, limits: dict[str, tuple[float, float]]) -> None:
        import fcntl  # POSIX only, as the workers are

        self._flock = fcntl.flock
        self._ex, self._un = fcntl.LOCK_EX, fcntl.LOCK_UN
        self.limits = limits
        self._slot: dict[str, int] = {}  # found slots (a slot is never freed or moved)
        size = SLOTS * SLOT.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(self._fd).st_size < size:  # new: zeros, every slot free
                os.ftruncate(self._fd, size)
            self._map = mmap.mmap(self._fd, size)
        except OSError as exc:
            os.close(self._fd)
            raise ValueError(f"rate-limit file {path} cannot be used: {exc.strerror}") from None
        self._lock = threading.Lock()  # flock does not exclude threads sharing the file

    def _find(self, digest: str) -> int:
        """The slot of key ``digest``, claimed when it has none yet (under the file lock)."""
        found = self._slot.get(digest)
        if found is not None:
            return found
        key = bytes.fromhex(digest[:32])
        start = int(digest[:8], 16) % SLOTS
        for step in range(SLOTS):
            slot = (start + step) % SLOTS
            owner = SLOT.unpack_from(self._map, slot * SLOT.size)[0]
            if owner == key or owner == bytes(16):
                if owner != key:
                    SLOT.pack_into(self._map, slot * SLOT.size, key, 0.0, 0.0, 0.0)
                self._slot[digest] = slot
                return slot
        raise RuntimeError(f"the rate-limit file has no free slot of {SLOTS}")

    def take(self, digest: str, now: float) -> float:
        """0 when a token of key ``digest`` was taken, else the seconds until one is."""
        rate, burst = self.limits[digest]
        with self._lock:
            self._flock(self._fd, self._ex)
            try:
                offset = self._find(digest) * SLOT.size
                key, started, tokens, last = SLOT.unpack_from(self._map, offset)
                if not started:
                    tokens, last = burst, now
                tokens, wait = refill(tokens, last, now, rate, burst)
                SLOT.pack_into(self._map, offset, key, 1.0, tokens, max(last, now))
            finally:
                self._flock(self._fd, self._un)
        return wait

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
