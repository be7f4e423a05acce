"""Opportunistic micro-batching of requests inside one event loop.

Requests that arrive while the loop is busy are answered together: each ``submit`` queues
its item and waits; the batch runs as soon as the loop is free, over every item queued by
then (no timer, so a lone request waits for nothing).  Under load the work that costs the
same for one request as for many (a pass over the whole catalog) is shared; with one
client it is a batch of one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """``fn`` maps a batch of items to one result per item, in order; a result that is an
    ``Exception`` is raised to that item's caller alone."""

    def __init__(self, fn: Callable[[Sequence[T]], Sequence[R | Exception]],
                 max_batch: int = 64) -> None:
        self.fn, self.max_batch = fn, max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled = False
        self.batches = 0  # how many batches ran (for tests and metrics)
        self.items = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run)
        return await future

    def _run(self) -> None:
        batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
        if self._pending:  # the rest goes in the next batch
            asyncio.get_running_loop().call_soon(self._run)
        else:
            self._scheduled = False
        live = [(item, future) for item, future in batch if not future.cancelled()]
        if not live:
            return
        self.batches, self.items = self.batches + 1, self.items + len(live)
        try:
            results = self.fn([item for item, _ in live])
            if len(results) != len(live):
                raise RuntimeError(f"batch function returned {len(results)} results for "
                                   f"{len(live)} items")
        except Exception as exc:  # the whole batch failed: every caller sees it
            for _, future in live:
                future.set_exception(exc)
            return
        for (_, future), result in zip(live, results, strict=True):
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
