"""The catalog pass: half precision selects the same candidates as float32 (float16 for one
query, bfloat16 for a batch), with the normalizer corrected."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrec.serve.engine import Engine
from mtrec.serve.index import IndexConfig
from mtrec.serve.scan import CatalogScan, Pool
from tests.serve.conftest import Served


def _planted(n: int = 3000, dim: int = 48, queries: int = 20) -> tuple[torch.Tensor, ...]:
    """Items in 30 clusters; each query sits on one cluster, so its best items are known
    to be that cluster's and the softmax mass is concentrated as in a trained model."""
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(30, dim, generator=gen) * 2
    label = torch.randint(0, 30, (n,), generator=gen)
    items = centers[label] + 0.5 * torch.randn(n, dim, generator=gen)
    matrix = torch.cat([torch.zeros(1, dim), items])  # row 0: padding
    which = torch.arange(queries) % 30
    return matrix, centers[which] / 2, label, which


def _run(dtype: str, matrix: torch.Tensor, q: torch.Tensor,
         excludes: list[np.ndarray]) -> list[Pool]:
    scan = CatalogScan(dtype)  # type: ignore[arg-type]
    scan.rebuild(matrix)
    return scan.candidates(q, matrix, 1.0, [50] * len(q), excludes)


@pytest.mark.parametrize("dtype", ["half", "int8"])
@pytest.mark.parametrize("batched", [True, False])
def test_reduced_candidates_and_normalizer_match_float32(batched: bool, dtype: str) -> None:
    matrix, q, label, which = _planted()
    excludes = [np.array([1, 2, 3, 0]) + b for b in range(len(q))]
    exact = _run("float32", matrix, q, excludes)
    approx = (_run(dtype, matrix, q, excludes) if batched else
              [_run(dtype, matrix, q[b:b + 1], excludes[b:b + 1])[0] for b in range(len(q))])
    truth = torch.logsumexp(matrix[1:] @ q.T, 0)
    for b, ((pool32, lse32, _), (pool16, lse16, logits16)) in enumerate(
            zip(exact, approx, strict=True)):
        # the candidates' logits are float32 ones, whatever the pass's precision
        torch.testing.assert_close(logits16, matrix[pool16] @ q[b])
        assert set(pool32[:10].tolist()) <= set(pool16.tolist())  # exact top 10 selected
        assert (label[pool32[:10] - 1] == which[b]).all()  # the planted answer
        assert not set(excludes[b][excludes[b] > 0].tolist()) & set(pool16.tolist())
        assert float(lse32) == pytest.approx(float(truth[b]), abs=1e-4)
        assert float(lse16) == pytest.approx(float(truth[b]), abs=2e-2)


@pytest.mark.parametrize("dtype", ["half", "int8"])
def test_copy_follows_new_and_changed_rows(dtype: str) -> None:
    matrix, q, *_ = _planted(n=200)
    scan = CatalogScan(dtype)  # type: ignore[arg-type]
    scan.rebuild(matrix)
    grown = torch.cat([matrix, 10 * q[:1]])  # a new item right on query 0
    scan.grow(grown)
    (pool, *_), = scan.candidates(q[:1], grown, 1.0, [1], [np.zeros(0, dtype=np.int64)])
    assert pool.tolist() == [len(grown) - 1]
    grown[5] = 20 * q[0]  # re-described: now the best of all
    scan.set_rows(torch.tensor([5]), grown[5:6])
    (pool, *_), = scan.candidates(q[:1], grown, 1.0, [2], [np.zeros(0, dtype=np.int64)])
    assert pool.tolist() == [5, len(grown) - 1]


@pytest.mark.parametrize("dtype", ["half", "int8"])
def test_engine_recommends_the_same_with_any_scan(served: Served, dtype: str) -> None:
    fast = Engine.from_bundle(served.bundle, IndexConfig(scan=dtype))  # type: ignore[arg-type]
    exact = Engine.from_bundle(served.bundle, IndexConfig(scan="float32"))
    scen = fast.scenario(None)
    for user in served.data.user_ids[:10]:
        history = fast.history(user)
        a = fast.recommend(history, 10, scen, user=user)
        b = exact.recommend(history, 10, scen, user=user)
        assert [h.item_id for h in a] == [h.item_id for h in b]
        assert [h.scores["next_item"] for h in a] == pytest.approx(
            [h.scores["next_item"] for h in b], rel=3e-2)


def test_unknown_scan_is_refused() -> None:
    with pytest.raises(ValueError, match=r"index\.scan must be 'float32', 'half' or 'int8', "
                                         r"got 'float16'"):
        IndexConfig(scan="float16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"scan must be one of float32, half, int8"):
        CatalogScan("int4")  # type: ignore[arg-type]


def test_an_ann_engine_keeps_no_half_copies_and_ranks_as_the_exact_one(served: Served) -> None:
    ann = Engine.from_bundle(served.bundle, IndexConfig(exact_max=20, num_threads=1))
    exact = Engine.from_bundle(served.bundle)
    # the pass is unused
    assert ann.retrieval.next_item.kind_ == "hnsw" and ann.retrieval.scan.copies == {}
    assert exact.retrieval.next_item.kind_ == "exact" and len(exact.retrieval.scan.copies) == 2
    scen = ann.scenario(None)
    for user in served.data.user_ids[:10]:  # 60 items: the graph search finds them all
        a = ann.recommend(ann.history(user), 5, scen, user=user)
        b = exact.recommend(exact.history(user), 5, scen, user=user)
        assert [h.item_id for h in a] == [h.item_id for h in b]


def test_auto_scan_follows_the_bundle_tables() -> None:
    from mtrec.serve.app import ServeSettings

    int8_export = {"export": {"tables": "int8"}}
    assert ServeSettings().index_config(int8_export).scan == "int8"
    assert ServeSettings().index_config({"export": {"tables": "float16"}}).scan == "half"
    assert ServeSettings().index_config({}).scan == "half"
    assert ServeSettings(scan="float32").index_config(int8_export).scan == "float32"
