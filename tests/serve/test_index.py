"""mtrec.serve.index: exact search against brute force, HNSW recall, incremental adds, errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mtrec.serve.index import IndexConfig, ItemIndex

EXACT = IndexConfig()
HNSW = IndexConfig(exact_max=100, num_threads=1)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def random_items(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return unit(rng.standard_normal((n, dim))), np.arange(1, n + 1, dtype=np.int64)


def brute_force(vectors: np.ndarray, codes: np.ndarray, query: np.ndarray, k: int,
                exclude: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    scores = vectors.astype(np.float64) @ query.astype(np.float64)
    order = [i for i in np.argsort(-scores, kind="stable") if codes[i] not in exclude][:k]
    return codes[order], scores[order]


@pytest.fixture(scope="module")
def hnsw_data() -> tuple[np.ndarray, np.ndarray, ItemIndex]:
    pytest.importorskip("hnswlib")
    vectors, codes = random_items(2000, 32, seed=1)
    return vectors, codes, ItemIndex(HNSW).build(vectors, codes)


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(("field", "value", "match"), [
    ("ef_search", 0, r"index\.ef_search must be >= 1, got 0"),
    ("m", -3, r"index\.m must be >= 1, got -3"),
    ("exact_max", -1, r"index\.exact_max must be >= 0, got -1"),
    ("ef_construction", 1.5, r"index\.ef_construction must be an int, got float"),
    ("seed", True, r"index\.seed must be an int, got bool"),
])
def test_config_rejects_bad_values(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        IndexConfig(**{field: value})  # type: ignore[arg-type]


# ---------------------------------------------------------------- exact search


def test_exact_equals_brute_force() -> None:
    vectors, codes = random_items(500, 16, seed=0)
    perm = np.random.default_rng(5).permutation(500)  # rows not in code order
    index = ItemIndex(EXACT).build(vectors[perm], codes[perm])
    assert index.kind_ == "exact" and index.dim_ == 16 and len(index) == 500
    rng = np.random.default_rng(2)
    for _ in range(10):
        q = unit(rng.standard_normal(16))
        got_codes, got_scores = index.search(q, k=10)
        want_codes, want_scores = brute_force(vectors, codes, q, 10)
        assert got_codes.dtype == np.int64 and got_scores.dtype == np.float32
        np.testing.assert_array_equal(got_codes, want_codes)
        np.testing.assert_allclose(got_scores, want_scores, rtol=0, atol=1e-5)


def test_exact_batch_matches_single_queries() -> None:
    vectors, codes = random_items(300, 8, seed=3)
    index = ItemIndex(EXACT).build(vectors, codes)
    queries = unit(np.random.default_rng(4).standard_normal((5, 8)))
    batch_codes, batch_scores = index.search(queries, k=7, exclude=np.array([1, 2, 3]))
    assert batch_codes.shape == (5, 7) and batch_scores.shape == (5, 7)
    for b in range(5):
        want_codes, want_scores = brute_force(vectors, codes, queries[b], 7, exclude=(1, 2, 3))
        np.testing.assert_array_equal(batch_codes[b], want_codes)
        np.testing.assert_allclose(batch_scores[b], want_scores, atol=1e-5)


def test_exact_exclude_never_returned_and_result_not_shrunk() -> None:
    vectors, codes = random_items(200, 8, seed=6)
    index = ItemIndex(EXACT).build(vectors, codes)
    q = vectors[41]  # code 42 is its own best match
    top = index.search(q, k=5)[0]
    assert top[0] == 42
    exclude = np.array([*top.tolist(), 999])  # 999 is unknown: ignored
    got, _ = index.search(q, k=5, exclude=exclude)
    assert len(got) == 5 and not set(got.tolist()) & set(top.tolist())
    np.testing.assert_array_equal(got, brute_force(vectors, codes, q, 5, tuple(top.tolist()))[0])


def test_k_larger_than_index_returns_everything() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    index = ItemIndex(EXACT).build(vectors, np.array([10, 20, 30]))
    got, scores = index.search(np.array([1.0, 0.0], dtype=np.float32), k=50)
    np.testing.assert_array_equal(got, [10, 30, 20])
    np.testing.assert_allclose(scores, [1.0, 0.6, 0.0], atol=1e-7)
    got, _ = index.search(np.array([1.0, 0.0], dtype=np.float32), k=50, exclude=np.array([30]))
    np.testing.assert_array_equal(got, [10, 20])
    got, _ = index.search(np.array([1.0, 0.0], dtype=np.float32), k=3,
                          exclude=np.array([10, 20, 30]))
    assert got.shape == (0,)


def test_ties_go_to_the_smaller_code() -> None:
    # Integer-valued vectors: every dot product is exact, so ties are exact.
    vectors = np.array([[1, 0], [2, 0], [1, 0], [2, 0], [1, 0], [0, 1]], dtype=np.float32)
    codes = np.array([9, 7, 3, 8, 5, 1])
    index = ItemIndex(EXACT).build(vectors, codes)
    q = np.array([1.0, 0.0], dtype=np.float32)
    np.testing.assert_array_equal(index.search(q, k=3)[0], [7, 8, 3])  # cut inside the tie
    np.testing.assert_array_equal(index.search(q, k=6)[0], [7, 8, 3, 5, 9, 1])
    np.testing.assert_array_equal(index.search(q, k=4, exclude=np.array([8]))[0], [7, 3, 5, 9])


# ---------------------------------------------------------------- incremental adds (exact)


def test_exact_add_and_update() -> None:
    vectors, codes = random_items(100, 16, seed=7)
    index = ItemIndex(EXACT).build(vectors[:3], codes[:3])  # small: several capacity doublings
    for start in range(3, 100, 9):
        index.add(vectors[start: start + 9], codes[start: start + 9])
    assert len(index) == 100
    np.testing.assert_array_equal(index.codes(), codes)
    new = unit(np.random.default_rng(8).standard_normal((1, 16)))
    index.add(new, np.array([500]))
    assert len(index) == 101
    assert index.search(new[0], k=1)[0].tolist() == [500]
    # Update code 5 to point at a new direction: found from there, gone from the old one.
    old, fresh = vectors[4].copy(), unit(np.random.default_rng(9).standard_normal((1, 16)))
    index.add(fresh, np.array([5]))
    assert len(index) == 101
    np.testing.assert_array_equal(index.vector(5), fresh[0])
    assert index.search(fresh[0], k=1)[0].tolist() == [5]
    got, scores = index.search(old, k=101)
    assert got[0] != 5
    np.testing.assert_allclose(scores[got.tolist().index(5)], fresh[0] @ old, atol=1e-5)


def test_exact_stays_exact_past_exact_max() -> None:
    vectors, codes = random_items(30, 4, seed=10)
    index = ItemIndex(IndexConfig(exact_max=10)).build(vectors[:10], codes[:10])
    index.add(vectors[10:], codes[10:])
    assert index.kind_ == "exact" and len(index) == 30
    q = vectors[25]
    np.testing.assert_array_equal(index.search(q, k=5)[0], brute_force(vectors, codes, q, 5)[0])


# ---------------------------------------------------------------- HNSW


def test_hnsw_recall_against_exact(hnsw_data: tuple[np.ndarray, np.ndarray, ItemIndex]) -> None:
    vectors, codes, index = hnsw_data
    assert index.kind_ == "hnsw" and len(index) == 2000
    exact = ItemIndex(EXACT).build(vectors, codes)
    queries = unit(np.random.default_rng(11).standard_normal((50, 32)))
    got, scores = index.search(queries, k=10)
    want, _ = exact.search(queries, k=10)
    assert got.shape == (50, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.95
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first
    np.testing.assert_allclose(scores, np.einsum("bd,bkd->bk", queries, vectors[got - 1]),
                               atol=1e-5)


def test_hnsw_exclude(hnsw_data: tuple[np.ndarray, np.ndarray, ItemIndex]) -> None:
    vectors, _, index = hnsw_data
    q = vectors[99]
    top = index.search(q, k=10)[0]
    assert top[0] == 100
    got, _ = index.search(q, k=10, exclude=top)
    assert len(got) == 10 and not set(got.tolist()) & set(top.tolist())
    assert 0 not in got


def test_hnsw_add_and_update() -> None:
    pytest.importorskip("hnswlib")
    vectors, codes = random_items(300, 16, seed=12)
    index = ItemIndex(HNSW).build(vectors[:150], codes[:150])
    assert index.kind_ == "hnsw"
    for start in range(150, 300, 50):  # grows past the initial capacity: resize_index
        index.add(vectors[start: start + 50], codes[start: start + 50])
    assert len(index) == 300
    np.testing.assert_array_equal(index.codes(), codes)
    for code in (151, 222, 300):
        assert index.search(vectors[code - 1], k=1)[0].tolist() == [code]
    old, fresh = vectors[9].copy(), unit(np.random.default_rng(13).standard_normal((1, 16)))
    index.add(fresh, np.array([10]))
    assert len(index) == 300
    np.testing.assert_allclose(index.vector(10), fresh[0])
    assert index.search(fresh[0], k=1)[0].tolist() == [10]
    got, scores = index.search(old, k=5)
    assert 10 not in got.tolist()
    assert scores[0] < 0.999  # the old vector is no longer in the index


def test_hnsw_k_larger_than_index() -> None:
    pytest.importorskip("hnswlib")
    vectors, codes = random_items(120, 8, seed=14)
    index = ItemIndex(HNSW).build(vectors, codes)
    got, _ = index.search(vectors[0], k=500, exclude=np.array([1, 2]))
    assert sorted(got.tolist()) == list(range(3, 121))


# ---------------------------------------------------------------- errors and threads


def test_bad_input_errors() -> None:
    vectors, codes = random_items(20, 4, seed=15)
    index = ItemIndex(EXACT)
    with pytest.raises(RuntimeError, match="not built"):
        index.search(vectors[0], k=1)
    index.build(vectors, codes)
    with pytest.raises(ValueError, match="k must be an int >= 1, got 0"):
        index.search(vectors[0], k=0)
    with pytest.raises(ValueError, match="expected 4, got 5"):
        index.search(np.zeros(5, dtype=np.float32), k=1)
    with pytest.raises(ValueError, match="expected 4, got 3"):
        index.add(np.zeros((1, 3), dtype=np.float32), np.array([21]))
    with pytest.raises(KeyError, match="item code 77 is not in the index"):
        index.vector(77)
    with pytest.raises(ValueError, match="codes must be >= 1"):
        index.add(np.zeros((1, 4), dtype=np.float32), np.array([0]))
    with pytest.raises(ValueError, match="unique"):
        index.add(np.zeros((2, 4), dtype=np.float32), np.array([30, 30]))
    with pytest.raises(ValueError, match="finite"):
        index.search(np.full(4, np.nan, dtype=np.float32), k=1)


def test_concurrent_add_and_search() -> None:
    vectors, codes = random_items(400, 8, seed=16)
    index = ItemIndex(EXACT).build(vectors[:1], codes[:1])
    errors: list[BaseException] = []

    def searcher() -> None:
        try:
            for i in range(200):
                got, scores = index.search(vectors[i % 400], k=3)
                assert len(got) == len(scores) and 0 not in got
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=searcher)
    thread.start()
    for i in range(1, 400, 7):
        index.add(vectors[i: i + 7], codes[i: i + 7])
    thread.join()
    assert not errors
    assert len(index) == 400
