"""The RecBole comparison without RecBole: the export and its round trip on planted splits,
the round-trip check catching corrupted files, the runner's masked ranking against a brute
force and against mtrec's own, and the driver's result rows (with a fake runner)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks.export_recbole import (
    PANDAS_NA,
    ExportError,
    check_round_trip,
    export_recbole,
    from_token,
    read_rows,
    to_token,
)
from benchmarks.peers import recbole as driver
from benchmarks.peers.recbole_runner import MISS, build_config, masked_target_ranks, parse
from benchmarks.peers.venv import PeerError
from mtrec.data.interactions import Catalog, Interactions, Prepared
from mtrec.data.split import TEST, TRAIN, VALID
from mtrec.eval import protocols
from mtrec.run_config import load_run_config
from mtrec.train.run import prepare_run
from tests.planted import planted, write_store

T, V, X = TRAIN, VALID, TEST
ITEMS = ["", "i1", "i 2", "NA", "[PAD]", "50%", 'q"t', "tab\tx", "i8"]
# Per user: (item code, part) in order.
USERS: dict[str, list[tuple[int, int]]] = {
    "alice": [(1, T), (2, T), (3, T), (4, T), (5, T), (6, V), (7, V), (1, X), (8, X)],
    "bob b": [(2, T), (8, X)],  # one training item: no train row, a test row
    "null": [(3, T)],  # one training item and nothing held out: in no sequential file
    "dave": [(4, T), (5, T), (4, V)],  # valid but no test
}
MAX_LEN = 3


def _prepared() -> Prepared:
    user, item, part = [], [], []
    for u, seq in enumerate(USERS.values()):
        for i, p in seq:
            user.append(u)
            item.append(i)
            part.append(p)
    m = len(user)
    counts = np.bincount(user, minlength=len(USERS))
    data = Interactions(
        user=np.array(user, np.int64), item=np.array(item, np.int64),
        behaviors=np.ones(m, np.int64), scenario=np.ones(m, np.int64),
        rating=np.full(m, np.nan, np.float32), ts=np.full(m, -1, np.int64),
        part=np.array(part, np.int8), offsets=np.concatenate([[0], np.cumsum(counts)]))
    catalog = Catalog(np.array(ITEMS, dtype=object), [""] * len(ITEMS),
                      np.array(list(USERS), dtype=object), ("",))
    return Prepared("hand made", "loo", catalog, data, {})


@pytest.fixture()
def exported(tmp_path: Path) -> tuple[Prepared, Any]:
    prepared = _prepared()
    return prepared, export_recbole(prepared, tmp_path, name="hand", max_len=MAX_LEN)


def test_export_writes_the_planted_split(exported: tuple[Prepared, Any]) -> None:
    prepared, export = exported
    assert check_round_trip(prepared, export) == {k: export.rows[k] for k in export.rows}
    # alice: 4 train rows (t = 1..4), bob and null none, dave 1.
    assert export.rows == {"seq.train": 5, "pair.train": 9, "seq.valid": 2, "pair.valid": 2,
                           "seq.test": 2, "pair.test": 2}
    train = read_rows(export.file("hand", "train"), driver_header("seq"))
    assert [(r.user, r.history, r.target) for r in train[:4]] == [
        ("alice", ("i1",), "i 2"), ("alice", ("i1", "i 2"), "NA"),
        ("alice", ("i1", "i 2", "NA"), "[PAD]"), ("alice", ("i 2", "NA", "[PAD]"), "50%")]
    test = read_rows(export.file("hand", "test"), driver_header("seq"))
    # alice's test row: the last MAX_LEN of train + both valid items; the first test target.
    assert [(r.user, r.history, r.target) for r in test] == [
        ("alice", ("50%", 'q"t', "tab\tx"), "i1"), ("bob b", ("i 2",), "i8")]
    valid = read_rows(export.file("hand_pairs", "valid"), driver_header("pair"))
    assert [(r.user, r.target) for r in valid] == [("alice", 'q"t'), ("dave", "[PAD]")]
    lines = export.history_path.read_text(encoding="utf-8").splitlines()
    history = [from_token(t) for t in json.loads(lines[0])["history"]]
    assert history == ["i1", "i 2", "NA", "[PAD]", "50%", 'q"t', "tab\tx"]  # untruncated
    assert export.test_users.tolist() == [0, 1] and export.test_targets.tolist() == [1, 8]
    item_file = (export.data_path / "hand" / "hand.item").read_text(encoding="utf-8")
    assert [from_token(t) for t in item_file.split("\n")[1:] if t] == ITEMS[1:]


def driver_header(kind: str) -> str:
    from benchmarks.export_recbole import PAIR_HEADER, SEQ_HEADER

    return SEQ_HEADER if kind == "seq" else PAIR_HEADER


@pytest.mark.parametrize("value", ["B0001", "a b", "tab\there", "NA", "null", "", "[PAD]",
                                   "%41", 'say "hi"', "it's", "line\nbreak", "ü ß\u3000x"])
def test_tokens_survive_recbole_and_pandas(value: str) -> None:
    if not value:
        with pytest.raises(ExportError, match="empty id"):
            to_token(value)
        return
    token = to_token(value)
    assert from_token(token) == value
    assert not any(ch.isspace() or ch in "\"'[]" for ch in token)  # RecBole splits on " "
    assert token not in PANDAS_NA and token != "[PAD]"


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    prepared = _prepared()
    items = np.array(["", "i1", "i1", *ITEMS[3:]], dtype=object)
    catalog = Catalog(items, prepared.catalog.texts, prepared.catalog.user_ids, ("",))
    with pytest.raises(ExportError, match="two items share the id 'i1'"):
        export_recbole(Prepared("x", "loo", catalog, prepared.interactions, {}), tmp_path)


def _replace_line(path: Path, line: int, old: str, new: str) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    assert old in lines[line - 1], (path, lines[line - 1])
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_text("\n".join(lines), encoding="utf-8")


# (file, 1-based line, text replaced, replacement, who the message must name)
CORRUPTIONS = [
    ("hand_pairs/hand_pairs.train.inter", 4, "%4EA", "i8", "alice"),  # a training item
    ("hand/hand.train.inter", 3, "\t%4EA", "\ti8", "alice"),  # a target of a train row
    ("hand/hand.train.inter", 5, "i%202 %4EA", "i8 %4EA", "alice"),  # a truncated history
    ("hand/hand.valid.inter", 3, "50%25\t%5BPAD%5D", "50%25\ti1", "dave"),  # a valid target
    ("hand/hand.test.inter", 3, "i%202\t", "i1\t", "bob b"),  # a test history
    ("hand_pairs/hand_pairs.test.inter", 2, "\ti1", "\ti8", "alice"),  # a test target
    ("hand.test_history.jsonl", 2, '"i%202"', '"i1"', "bob b"),  # a masked history
    ("hand/hand.item", 3, "i%202", "i9", "i 2"),  # the catalog
]


@pytest.mark.parametrize(("name", "line", "old", "new", "who"), CORRUPTIONS)
def test_round_trip_names_the_corrupted_line(exported: tuple[Prepared, Any], name: str,
                                             line: int, old: str, new: str, who: str) -> None:
    prepared, export = exported
    path = export.data_path / name
    _replace_line(path, line, old, new)
    with pytest.raises(ExportError) as info:
        check_round_trip(prepared, export)
    message = str(info.value)
    assert f"{path}:{line}" in message and repr(who) in message


def test_round_trip_catches_a_missing_row(exported: tuple[Prepared, Any]) -> None:
    prepared, export = exported
    path = export.file("hand_pairs", "valid")
    lines = path.read_text(encoding="utf-8").split("\n")
    path.write_text("\n".join(lines[:2] + lines[3:]), encoding="utf-8")  # drop dave's row
    with pytest.raises(ExportError, match=r"user 'dave' \(code 3\): valid target .*no row"):
        check_round_trip(prepared, export)


def test_export_round_trip_on_a_synthetic_store(tmp_path: Path) -> None:
    store = write_store(planted(n_users=60, n_items=30, seed=4), tmp_path)
    prepared = prepare_run(load_run_config(None, **{"data.dataset": str(store),
                                                    "data.protocol": "loo"}))
    export = export_recbole(prepared, tmp_path / "out", max_len=5)
    counts = check_round_trip(prepared, export)
    data = prepared.interactions
    train_users = np.bincount(data.user[data.part == TRAIN], minlength=len(data.offsets) - 1)
    assert counts["pair.train"] == int((data.part == TRAIN).sum())
    assert counts["seq.train"] == int(np.maximum(train_users - 1, 0).sum())
    assert counts["seq.test"] == len(np.unique(data.user[data.part == TEST]))
    rows = read_rows(export.file(export.seq_name, "train"), driver_header("seq"))
    assert max(len(r.history) for r in rows) == 5


def _brute_force(scores: np.ndarray, targets: np.ndarray,
                 histories: list[np.ndarray]) -> list[int]:
    out = []
    for row, target in enumerate(targets):
        masked = {0, *histories[row].tolist()}
        t = scores[row, target]
        if target in masked or np.isnan(t):
            out.append(MISS)
            continue
        out.append(sum(1 for col in range(scores.shape[1]) if col != target
                       and col not in masked and scores[row, col] >= t))
    return out


def test_masked_ranks_match_brute_force_and_mtrec() -> None:
    rng = np.random.default_rng(0)
    b, n = 64, 40  # column 0 is padding, items 1..39
    scores = rng.integers(0, 6, (b, n)).astype(np.float64)  # many ties
    targets = rng.integers(1, n, b)
    histories = [rng.choice(np.arange(1, n), rng.integers(0, 8), replace=False) for _ in range(b)]
    histories[0] = np.array([targets[0]])  # a target in its history: a miss
    ranks = masked_target_ranks(scores, targets, histories)
    assert ranks.tolist() == _brute_force(scores, targets, histories)
    assert ranks[0] == MISS == protocols.MISS
    theirs = protocols.masked_ranks(torch.from_numpy(scores[:, 1:]).float(),
                                    torch.from_numpy(targets - 1), histories)
    assert ranks.tolist() == theirs.tolist()
    scores[1, targets[1]] = np.nan
    scores[2, :] = np.nan
    scores[2, targets[2]] = 1.0  # NaN items never rank ahead
    ranks = masked_target_ranks(scores, targets, histories)
    assert ranks.tolist() == _brute_force(scores, targets, histories)
    assert ranks[1] == MISS and (ranks[2] == 0 or targets[2] in histories[2])


def test_runner_config_follows_the_model_kind(tmp_path: Path) -> None:
    args = parse(["--model", "SASRec", "--data-path", str(tmp_path), "--dataset", "d",
                  "--history", "h", "--workdir", "w", "--ranks", "r", "--out", "o",
                  "--epochs", "3", "--stopping-step", "2", "--config", '{"learning_rate": 0.01}'])
    seq = build_config("SASRec", args)
    assert seq["train_neg_sample_args"] is None and seq["loss_type"] == "CE"
    assert seq["alias_of_item_id"] == ["item_id_list"] and seq["MAX_ITEM_LIST_LENGTH"] == 50
    assert seq["benchmark_filename"] == ["train", "valid", "test"]
    assert seq["learning_rate"] == 0.01 and seq["epochs"] == 3 and not seq["use_gpu"]
    bpr = build_config("BPR", args)
    assert "train_neg_sample_args" not in bpr and bpr["load_col"]["inter"] == ["user_id",
                                                                              "item_id"]


def _fake_result(model: str) -> dict[str, Any]:
    keys = ("train_seconds", "seconds_per_epoch", "peak_rss_gib", "outer_wall_seconds",
            "fit_wall_seconds", "load_seconds", "score_seconds", "threads")
    return {**dict.fromkeys(keys, 1.0), "epochs": 2, "best_epoch": 1, "epoch_seconds": [1, 1],
            "config": {"model": model}, "config_dict": {}, "recbole_own_test": {},
            "own_style_test": {}, "valid_scores": [0.1, 0.2], "versions": {"recbole": "1.2.1"},
            "allocator": "glibc"}


def test_driver_rows_from_a_fake_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepared = _prepared()

    def fake(name: str, script: str, args: list[str], out_json: Path,
             timeout: float | None = None) -> dict[str, Any]:
        model = args[args.index("--model") + 1]
        if model == "BERT4Rec":
            raise PeerError("recbole: exited 1:\nTraceback ...\nValueError: boom")
        np.save(args[args.index("--ranks") + 1], np.array([0, MISS]))
        return _fake_result(model)

    monkeypatch.setattr(driver, "run_runner", fake)
    rows = driver.run_recbole(prepared, ["SASRec", "BERT4Rec"], 2, 1, tmp_path)
    ok, failed = rows
    assert ok["system"] == "RecBole" and ok["kind"] == "peer" and ok["note"] == ""
    assert ok["metrics"]["ndcg@10"] == 0.5 and ok["metrics"]["users"] == 2
    # Training counts: item 1 has 1, item 8 none: both targets are cold.
    assert ok["metrics"]["cold_share"] == 1.0 and ok["metrics"]["cold_recall@10"] == 0.5
    assert "metrics" not in failed and failed["error"].endswith("ValueError: boom")
    assert failed["note"] == "RecBole BERT4Rec did not finish: ValueError: boom"


def test_a_held_out_user_without_history_is_refused(tmp_path: Path) -> None:
    prepared = _prepared()
    data = prepared.interactions
    part = data.part.copy()
    part[data.user == 1] = TEST  # bob: no training item left, only test interactions
    broken = Prepared("x", "cold-user", prepared.catalog,
                      Interactions(**{**data.__dict__, "part": part}), {})
    with pytest.raises(ExportError, match=r"1 users \(first 'bob b'\) have a test target"):
        export_recbole(broken, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written


def test_runner_imports_neither_recbole_torch_nor_mtrec() -> None:
    code = ("import sys, benchmarks.peers.recbole_runner; "
            "print(sorted(m for m in ('recbole', 'torch', 'mtrec', 'pandas') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
