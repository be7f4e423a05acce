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


SLOT = struct.Struct("<ddd")  # started (0: not yet, the bucket is full), tokens, last


class SharedBuckets:
    """Token buckets in the file ``path``, one slot per limited key (by sorted hash, the
    same in every worker: they read the same key file); ``limits`` maps a key's hash to its
    ``(rate, burst)``.  Times are ``time.monotonic()``, one clock for every process."""

    def __init__(self, path: str | Path, limits: dict[str, tuple[float, float]]) -> None:
        import fcntl  # POSIX only, as the workers are

        self._flock = fcntl.flock
        self._ex, self._un = fcntl.LOCK_EX, fcntl.LOCK_UN
        self.limits = limits
        self.slots = {digest: i for i, digest in enumerate(sorted(limits))}
        size = max(1, len(self.slots)) * SLOT.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(self._fd).st_size < size:  # new: zeros, every bucket not started
                os.ftruncate(self._fd, size)
            self._map = mmap.mmap(self._fd, size)
        except OSError as exc:
            os.close(self._fd)
            raise ValueError(f"rate-limit file {path} cannot be used: {exc.strerror}") from None
        self._lock = threading.Lock()  # flock does not exclude threads sharing the file

    def take(self, digest: str, now: float) -> float:
        """0 when a token of key ``digest`` was taken, else the seconds until one is."""
        rate, burst = self.limits[digest]
        offset = self.slots[digest] * SLOT.size
        with self._lock:
            self._flock(self._fd, self._ex)
            try:
                started, tokens, last = SLOT.unpack_from(self._map, offset)
                if not started:
                    tokens, last = burst, now
                tokens, wait = refill(tokens, last, now, rate, burst)
                SLOT.pack_into(self._map, offset, 1.0, tokens, max(last, now))
            finally:
                self._flock(self._fd, self._un)
        return wait

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
