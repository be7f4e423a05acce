"""A lean HTTP/1.1 load generator for loopback benchmarks (asyncio streams, keep-alive).

The client shares the machine's cores with the server, so it has to cost little per
request: each connection writes a prepared request and reads the status line, the headers
(``Content-Length``, ``Server-Timing``) and the body, nothing more.  A general client such
as httpx spends several times the server's own time per request here and would measure
itself.  Responses must carry ``Content-Length`` (FastAPI's JSON responses do).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadResult:
    wall_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    client_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)


def post_json(path: str, body: dict[str, Any], host: str = "127.0.0.1",
              headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one keep-alive ``POST`` of ``body`` as JSON (with extra ``headers``)."""
    data = json.dumps(body).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: {len(data)}\r\n\r\n").encode()
    return head + data


def server_timing(value: str) -> float:
    """Milliseconds from a ``Server-Timing`` header value.

    >>> server_timing("app;dur=1.250")
    1.25
    """
    return float(value.split("dur=")[1].split(",")[0])


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, float | None, bytes]:
    writer.write(request)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length, timing = 0, None
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"server-timing":
            timing = server_timing(value.decode())
    body = await reader.readexactly(length) if length else b""
    return status, timing, body


async def run_load(port: int, requests: Iterator[bytes], concurrency: int,
                   check: Callable[[int, bytes], bool] | None = None,
                   host: str = "127.0.0.1") -> LoadResult:
    """Send every request of ``requests`` over ``concurrency`` keep-alive connections, each
    sending its next request once the previous answer is in.  ``check(status, body)``
    False counts the answer as an error (status 0)."""
    result = LoadResult()
    source = iter(requests)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for request in source:
                started = time.perf_counter()
                status, timing, body = await _exchange(reader, writer, request)
                result.client_ms.append((time.perf_counter() - started) * 1000.0)
                if timing is not None:
                    result.server_ms.append(timing)
                if check is not None and status == 200 and not check(status, body):
                    status = 0
                result.statuses[status] = result.statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - started
    return result
