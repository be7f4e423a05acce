"""mtrec.serve.compressed: the IVF index over quantised codes, re-scored at full precision.

Planted structure: items are noisy copies of a few centres, queries are near one centre, so
the right answer is the exact top-k over the same vectors (brute force)."""

from __future__ import annotations

import numpy as np
import pytest

from mtrec.serve.engine import Engine
from mtrec.serve.index import IndexConfig, ItemIndex
from tests.serve.conftest import Served

pytest.importorskip("faiss")

IVF = IndexConfig(exact_max=100, ann="ivf", codec="PQ8", nlist=16, nprobe=8, rescore=50)


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    return (centres[rng.integers(0, 20, n)] + 0.4 * rng.standard_normal((n, dim))
            ).astype(np.float32)


class Table:
    """A growing float32 table read by code (row 0 is padding), as the catalog is."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.rows = np.vstack([np.zeros((1, vectors.shape[1]), np.float32), vectors])

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        return self.rows[codes]


@pytest.fixture(scope="module")
def built() -> tuple[np.ndarray, np.ndarray, ItemIndex, Table]:
    vectors = clustered(3000, 32, seed=1)
    codes = np.arange(1, 3001, dtype=np.int64)
    table = Table(vectors)
    return vectors, codes, ItemIndex(IVF, rows=table).build(vectors, codes), table


def test_recall_and_full_precision_scores(
        built: tuple[np.ndarray, np.ndarray, ItemIndex, Table]) -> None:
    vectors, codes, index, _ = built
    assert index.kind_ == "ivf" and len(index) == 3000
    queries = clustered(40, 32, seed=2)
    got, scores = index.search(queries, k=10)
    want, _ = ItemIndex(IndexConfig()).build(vectors, codes).search(queries, k=10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.95
    assert np.all(np.diff(scores, axis=1) <= 0)
    # re-scored with the full-precision rows, not the codes' approximations
    np.testing.assert_allclose(scores, np.einsum("bd,bkd->bk", queries, vectors[got - 1]),
                               rtol=1e-5, atol=1e-4)


def test_memory_per_item_is_a_fraction_of_float32() -> None:
    vectors = clustered(6000, 64, seed=6)
    config = IndexConfig(exact_max=10, ann="ivf", codec="PQ8", nlist=16)
    index = ItemIndex(config, rows=Table(vectors)).build(vectors[:3000], np.arange(1, 3001))
    before = index.nbytes()
    index.add(vectors[3000:], np.arange(3001, 6001))
    per_item = (index.nbytes() - before) / 3000  # centroids and PQ tables are fixed costs
    # 8 bytes of codes, an 8-byte id and its id-map entry, against 256 bytes of float32
    assert per_item <= 0.25 * 64 * 4


def test_exclude_and_k_past_the_index(
        built: tuple[np.ndarray, np.ndarray, ItemIndex, Table]) -> None:
    vectors, _, index, _ = built
    top = index.search(vectors[7], k=10)[0]
    assert top[0] == int(np.argmax(vectors @ vectors[7])) + 1
    got, _ = index.search(vectors[7], k=10, exclude=top)
    assert len(got) == 10 and not set(got.tolist()) & set(top.tolist()) and 0 not in got
    small = ItemIndex(IndexConfig(exact_max=10, ann="ivf", codec="SQ8", nlist=2, rescore=500)
                      ).build(vectors[:120], np.arange(1, 121))
    got, _ = small.search(vectors[0], k=500, exclude=np.array([1, 2]))
    assert sorted(got.tolist()) == list(range(3, 121))


def test_add_and_redescribe_read_the_rows_source() -> None:
    vectors = clustered(600, 16, seed=3)
    table = Table(vectors[:500])
    index = ItemIndex(IndexConfig(exact_max=10, ann="ivf", codec="SQ8", nlist=4, nprobe=4),
                      rows=table).build(vectors[:500], np.arange(1, 501))
    table.rows = np.vstack([table.rows, vectors[500:]])  # the catalog grows first
    index.add(vectors[500:], np.arange(501, 601))
    assert len(index) == 600 and index.codes().tolist() == list(range(1, 601))
    best = int(np.argmax(table.rows[1:] @ vectors[550])) + 1  # the brute-force answer
    assert index.search(vectors[550], k=1)[0].tolist() == [best]
    fresh = 5 * np.ones((1, 16), np.float32)
    table.rows[10] = fresh[0]
    index.add(fresh, np.array([10]))
    assert len(index) == 600
    np.testing.assert_allclose(index.vector(10), fresh[0])
    assert index.search(fresh[0], k=1)[0].tolist() == [10]


def test_without_a_rows_source_it_keeps_its_own_copy() -> None:
    vectors = clustered(400, 16, seed=4)
    index = ItemIndex(IndexConfig(exact_max=10, ann="ivf", codec="SQ8", nlist=4, nprobe=4)
                      ).build(vectors, np.arange(1, 401))
    np.testing.assert_allclose(index.vector(33), vectors[32])
    got, scores = index.search(vectors[32], k=3)
    best = int(np.argmax(vectors @ vectors[32]))
    assert got[0] == best + 1
    assert scores[0] == pytest.approx(float(vectors[best] @ vectors[32]), rel=1e-5)


@pytest.mark.parametrize(("fields", "match"), [
    ({"ann": "annoy"}, r"index\.ann must be 'hnsw' or 'ivf', got 'annoy'"),
    ({"codec": "PQ"}, r"index\.codec must be .* got 'PQ'"),
    ({"nprobe": 0}, r"index\.nprobe must be >= 1, got 0"),
    ({"train_per_list": 5}, r"index\.train_per_list must be >= 39, got 5"),
])
def test_config_errors(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        IndexConfig(**fields)  # type: ignore[arg-type]


def test_a_codec_that_does_not_fit_the_dimension_is_named() -> None:
    vectors = clustered(200, 30, seed=5)
    config = IndexConfig(exact_max=10, ann="ivf", codec="PQ7", nlist=2)
    with pytest.raises(ValueError, match=r"index\.codec 'PQ7' does not fit vectors of "
                                         r"dimension 30"):
        ItemIndex(config).build(vectors, np.arange(1, 201))


def test_an_ivf_engine_ranks_as_the_exact_one(served: Served) -> None:
    ivf = Engine.from_bundle(served.bundle, IndexConfig(exact_max=20, ann="ivf", codec="SQ8",
                                                        nlist=2, nprobe=2))
    exact = Engine.from_bundle(served.bundle)
    assert ivf.retrieval.next_item.kind_ == "ivf" and ivf.retrieval.scan.copies == {}
    # regression (review of the first version): the lookup indexes have other widths than
    # the retrieval table, so a codec sized for it broke start-up; they stay HNSW
    assert ivf.retrieval.similar.kind_ == "hnsw"
    assert ivf.retrieval.text is not None and ivf.retrieval.text.kind_ == "hnsw"
    scen = ivf.scenario(None)
    for user in served.data.user_ids[:10]:  # every list visited: the same candidates
        a = ivf.recommend(ivf.history(user), 5, scen, user=user)
        b = exact.recommend(exact.history(user), 5, scen, user=user)
        assert [h.item_id for h in a] == [h.item_id for h in b]


def test_a_codec_that_cannot_be_trained_is_named() -> None:
    vectors = clustered(100, 32, seed=7)  # PQ8 needs 256 points per sub-quantiser
    config = IndexConfig(exact_max=10, ann="ivf", codec="PQ8", nlist=2)
    with pytest.raises(ValueError, match=r"index IVF2,PQ8 cannot be trained on 100 vectors"):
        ItemIndex(config).build(vectors, np.arange(1, 101))


def test_serve_settings_carry_the_index_choice_to_workers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mtrec.serve.app import ServeSettings

    monkeypatch.setenv("MTREC_SERVE_ANN", "ivf")
    monkeypatch.setenv("MTREC_SERVE_CODEC", "SQ8")
    monkeypatch.setenv("MTREC_SERVE_EXACT_MAX", "1000")
    config = ServeSettings.from_env().index_config()
    assert (config.ann, config.codec, config.exact_max) == ("ivf", "SQ8", 1000)


@pytest.mark.parametrize("config", [
    IndexConfig(exact_max=20, ann="ivf", codec="SQ8", nlist=2, nprobe=2),
    IndexConfig(exact_max=20, num_threads=1),  # HNSW
    IndexConfig(scan="float32"),
    IndexConfig(scan="int8"),
], ids=["ivf", "hnsw", "float32", "int8"])
def test_an_added_item_is_found_whatever_the_index_and_pass(served: Served,
                                                            config: IndexConfig) -> None:
    # regression (a new user's try): with no reduced-precision copies (an ANN index or the
    # float32 pass), adding an item asked the catalog pass for copies it does not keep
    from mtrec.serve.engine import NewItem
    from mtrec.text.encoder import TextEncoder, TextEncoderConfig

    encoder = TextEncoder.from_config(TextEncoderConfig(model=str(served.encoder_dir),
                                                        bf16=False))
    engine = Engine.from_bundle(served.bundle, config, encoder=encoder)
    (code,) = engine.upsert_items([NewItem("fresh-1", "a fresh lavender soap bar")])
    assert engine.retrieval.next_item.vector(code) == pytest.approx(
        engine.catalog.matrix[code].numpy(), abs=1e-6)
    found = engine.retrieval.search(engine.embed(["a fresh lavender soap bar"])[0], 1)[0]
    assert found.tolist() == [code]


def test_health_says_which_index_and_pass_serve(served: Served) -> None:
    from fastapi.testclient import TestClient

    from mtrec.serve.app import ServeSettings, create_app

    config = IndexConfig(exact_max=20, ann="ivf", codec="SQ8", nlist=2, scan="int8")
    engine = Engine.from_bundle(served.bundle, config)
    with TestClient(create_app(ServeSettings(), engine), base_url="http://localhost") as client:
        health = client.get("/v1/health").json()
    assert (health["index"], health["scan"]) == ("ivf", "int8")
