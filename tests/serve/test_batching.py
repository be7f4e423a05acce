"""Micro-batching: requests queued together are answered by one call, each as if alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from mtrec.serve.batching import MicroBatcher
from mtrec.serve.engine import Ask, Engine
from tests.serve.conftest import Served


def _square_or_fail(calls: list[list[int]]) -> MicroBatcher[int, int]:
    def fn(items: Sequence[int]) -> list[int | Exception]:
        calls.append(list(items))
        return [ValueError(f"bad {i}") if i < 0 else i * i for i in items]
    return MicroBatcher(fn, max_batch=4)


def test_queued_requests_share_one_call_and_keep_their_order() -> None:
    calls: list[list[int]] = []
    batcher = _square_or_fail(calls)

    async def main() -> list[int | BaseException]:
        return await asyncio.gather(*(batcher.submit(i) for i in (1, 2, -3, 4, 5, 6)),
                                    return_exceptions=True)

    out = asyncio.run(main())
    assert out[:2] == [1, 4] and out[3:] == [16, 25, 36]
    assert isinstance(out[2], ValueError) and str(out[2]) == "bad -3"  # only its caller
    assert calls == [[1, 2, -3, 4], [5, 6]]  # max_batch 4, the rest in the next batch
    assert (batcher.batches, batcher.items) == (2, 6)


def test_a_lone_request_is_a_batch_of_one() -> None:
    calls: list[list[int]] = []
    batcher = _square_or_fail(calls)

    async def main() -> list[int]:
        return [await batcher.submit(i) for i in (3, 4)]

    assert asyncio.run(main()) == [9, 16] and calls == [[3], [4]]


def test_a_failing_batch_fails_each_caller() -> None:
    def broken(items: Sequence[int]) -> list[int | Exception]:
        raise RuntimeError("boom")

    batcher: MicroBatcher[int, int] = MicroBatcher(broken)

    async def main() -> list[int | BaseException]:
        return await asyncio.gather(batcher.submit(1), batcher.submit(2),
                                    return_exceptions=True)

    assert [str(e) for e in asyncio.run(main())] == ["boom", "boom"]


def test_engine_batch_equals_one_request_at_a_time(served: Served) -> None:
    engine = Engine.from_bundle(served.bundle)
    scen = engine.scenario(None)
    asks = []
    for user in served.data.user_ids[:6]:
        history = engine.history(user)
        seen = np.unique([s.code for s in history])
        asks.append(Ask(history, 5, scen, {"next_item": 1.0, "click": 0.5}, seen, user=user))
    asks.insert(2, Ask(asks[0].history, 5, scen, {"no_such_task": 1.0}))
    batched = engine.recommend_many(asks)
    assert isinstance(batched[2], ValueError) and "no_such_task" in str(batched[2])
    for ask, got in zip(asks, batched, strict=True):
        if ask.objective == {"no_such_task": 1.0}:
            continue
        alone = engine.recommend(ask.history, ask.k, ask.scenario, ask.objective,
                                 ask.exclude, user=ask.user)
        assert not isinstance(got, Exception)
        assert [h.item_id for h in got] == [h.item_id for h in alone]
        assert [h.score for h in got] == pytest.approx([h.score for h in alone], rel=1e-5)
        assert not {h.item_id for h in got} & {engine.item_ids[c] for c in ask.exclude}
