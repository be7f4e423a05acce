"""API keys with scopes, hashed at rest, and per-key rate limits (token buckets).

A key file is TOML, one ``[[key]]`` table per key; the file holds the SHA-256 of each key,
never the key (``mtrec key`` makes a key and prints its table)::

    [[key]]
    name = "storefront"
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    scopes = ["read"]
    rate = 50.0      # optional: requests per second (refill of the bucket)
    burst = 100      # optional: the bucket's size (default: one second of rate, at least 1)
    trending_budget = 50.0  # optional: how much this key's events move trending per hour

Keys are long random tokens, so one SHA-256 is enough to make the stored hashes useless to
whoever reads the file (no password-style stretching is needed).

>>> ring = Keyring([ApiKey("shop", hash_key("s3cret"), frozenset({"read"}))])
>>> ring.find("s3cret").name, ring.find("wrong")
('shop', None)
>>> ring.find("s3cret").allows("read"), ring.find("s3cret").allows("write:events")
(True, False)
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtrec.serve.ratelimit import Bucket, SharedBuckets

SCOPES = ("read", "write:events", "write:items", "admin")  # admin: every scope
NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # written into TOML unescaped
MIN_RATE = 0.001  # per second (one request in ~17 minutes): Retry-After stays finite
FIELDS = {"name", "sha256", "scopes", "rate", "burst", "trending_budget"}


def hash_key(key: str) -> str:
    """The hex SHA-256 of ``key`` (what a key file stores)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe)."""
    return "mtrec_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: str
    scopes: frozenset[str]
    rate: float | None = None  # requests per second; None: unlimited
    burst: int | None = None
    trending_budget: float | None = None  # trending weight its events may add per hour

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def toml(self) -> str:
        """This key's table, as a key file holds it."""
        lines = ["[[key]]", f'name = "{self.name}"', f'sha256 = "{self.sha256}"',
                 "scopes = [" + ", ".join(f'"{s}"' for s in sorted(self.scopes)) + "]"]
        if self.rate is not None:
            lines.append(f"rate = {self.rate}")
        if self.burst is not None:
            lines.append(f"burst = {self.burst}")
        if self.trending_budget is not None:
            lines.append(f"trending_budget = {self.trending_budget}")
        return "\n".join(lines) + "\n"


def all_scopes_key(key: str, name: str = "default") -> ApiKey:
    """The single key of ``--api-key`` / ``MTREC_API_KEY``: every scope, no rate limit."""
    return ApiKey(name, hash_key(key), frozenset(SCOPES))


def parse_key(entry: Any, where: str) -> ApiKey:
    """One ``[[key]]`` table; errors name ``where`` (file and entry) and the field."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a table, got {entry!r}")
    unknown = set(entry) - FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(FIELDS)}")
    name, digest, scopes = entry.get("name"), entry.get("sha256"), entry.get("scopes")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"{where}: field 'name' must be 1-64 letters, digits, '_', '-', '.' "
                         f"or ':', got {name!r}")
    if not (isinstance(digest, str) and len(digest) == 64
            and all(c in "0123456789abcdef" for c in digest)):
        raise ValueError(f"{where} ({name}): field 'sha256' must be 64 lowercase hex digits "
                         f"(the key's SHA-256, as `mtrec key` prints it), got {digest!r}")
    if not isinstance(scopes, list) or not scopes or not all(s in SCOPES for s in scopes):
        raise ValueError(f"{where} ({name}): field 'scopes' must be a non-empty list of "
                         f"{', '.join(SCOPES)}; got {scopes!r}")
    rate, burst, budget = entry.get("rate"), entry.get("burst"), entry.get("trending_budget")
    for field_name, value in (("rate", rate), ("trending_budget", budget)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value) or not MIN_RATE <= value <= 1e9):
            raise ValueError(f"{where} ({name}): field {field_name!r} must be a number from "
                             f"{MIN_RATE:g} to 1e9, got {value!r}")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int)
                              or burst < 1):
        raise ValueError(f"{where} ({name}): field 'burst' must be an integer >= 1, "
                         f"got {burst!r}")
    return ApiKey(name, digest, frozenset(scopes), None if rate is None else float(rate), burst,
                  None if budget is None else float(budget))


def load_keys(path: str | Path) -> tuple[ApiKey, ...]:
    """The keys of a TOML key file (see the module's doc); errors name the file and entry."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise ValueError(f"key file {path} cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"key file {path} is not valid TOML: {exc}") from None
    entries = data.get("key")
    if set(data) - {"key"} or not isinstance(entries, list) or not entries:
        raise ValueError(f"key file {path}: expected one or more [[key]] tables and nothing "
                         f"else, got top-level {sorted(data)}")
    keys = tuple(parse_key(e, f"{path}: key #{i + 1}") for i, e in enumerate(entries))
    for what in ("name", "sha256"):
        values = [getattr(k, what) for k in keys]
        dup = next((v for v in values if values.count(v) > 1), None)
        if dup is not None:
            raise ValueError(f"key file {path}: two keys with {what} {dup!r}")
    return keys


class Keyring:
    """The server's keys by hash, and a rate bucket for each limited key: in this process,
    or in ``rate_file`` when several workers share the limits (serve/ratelimit.py)."""

    def __init__(self, keys: list[ApiKey] | tuple[ApiKey, ...],
                 rate_file: str | Path | None = None) -> None:
        self.by_hash = {k.sha256: k for k in keys}
        limits = {k.sha256: (k.rate, float(k.burst or max(1.0, k.rate)))
                  for k in keys if k.rate is not None}
        self.shared = SharedBuckets(rate_file, limits) if rate_file and limits else None
        self.buckets = {} if self.shared else {d: Bucket(*lim) for d, lim in limits.items()}
        self.limited = frozenset(limits)

    def __bool__(self) -> bool:
        return bool(self.by_hash)

    def find(self, given: str | None) -> ApiKey | None:
        return None if not given else self.by_hash.get(hash_key(given))

    def wait(self, key: ApiKey, now: float | None = None) -> float:
        """0 when ``key`` may make a request now (a token is taken), else seconds to wait."""
        if key.sha256 not in self.limited:
            return 0.0
        now = time.monotonic() if now is None else now
        if self.shared is not None:
            return self.shared.take(key.sha256, now)
        return self.buckets[key.sha256].take(now)
