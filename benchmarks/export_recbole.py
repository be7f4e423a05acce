"""Export mtrec's split to RecBole atomic files, and read them back to check the round trip.

    python -m benchmarks.export_recbole amazon-beauty OUT_DIR [--protocol loo]

Two datasets are written under ``OUT_DIR`` (RecBole's ``data_path``), both pre-split in
RecBole's ``benchmark_filename`` format (``<name>.train.inter``, ``.valid.inter``,
``.test.inter``) and both with ``<name>.item`` listing every catalog item, so RecBole's item
vocabulary is mtrec's full catalog:

- ``<name>/`` for sequential models: ``user_id:token  item_id_list:token_seq  item_id:token``.
  A train row for every training interaction at position t >= 1 of its user (the history is
  the user's earlier training items, the last ``max_len``); a valid row per user with a
  valid interaction (target: the first one; history: the training items); a test row per
  user with a test interaction (target: the first one; history: training then valid items).
- ``<name>_pairs/`` for general models (BPR): ``user_id:token  item_id:token``; every
  training interaction, then the valid and test targets.

``<name>.test_history.jsonl`` has, per test row and in test-row order, the user's whole
visible history (untruncated): the items mtrec masks from the ranking.

Ids are written as tokens: ``%``-escaped where RecBole or pandas would mangle them
(whitespace, quotes, ``%``, brackets, and strings pandas reads as missing, such as "NA").
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

from mtrec.data.interactions import Interactions, Prepared
from mtrec.data.split import TEST, TRAIN, VALID

MAX_LEN = 50
SEQ_HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token"
PAIR_HEADER = "user_id:token\titem_id:token"
ITEM_HEADER = "item_id:token"
PARTS = ("train", "valid", "test")
# Strings pandas.read_csv turns into NaN by default (RecBole reads atomic files with it).
PANDAS_NA = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
_ESCAPED = frozenset('%"\'[]')


class ExportError(ValueError):
    """The split cannot be exported, or the exported files do not give the split back."""


def to_token(value: str) -> str:
    """``value`` as a RecBole token: characters RecBole or pandas would mangle are escaped.

    >>> to_token("B0001"), to_token("a b"), to_token("NA"), to_token("[PAD]")
    ('B0001', 'a%20b', '%4EA', '%5BPAD%5D')
    """
    if not value:
        raise ExportError("an empty id cannot be a RecBole token")
    out = "".join(quote(ch, safe="") if _needs_escape(ch) else ch for ch in value)
    if out in PANDAS_NA:  # all ASCII: escape the first character
        out = f"%{ord(out[0]):02X}{out[1:]}"
    return out


def _needs_escape(ch: str) -> bool:
    return ch.isspace() or ch in _ESCAPED or not ch.isprintable()


def from_token(token: str) -> str:
    """The id a token stands for (the inverse of :func:`to_token`).

    >>> from_token(to_token("a b\\tc")), from_token("%4EA")
    ('a b\\tc', 'NA')
    """
    return unquote(token)


@dataclass(frozen=True)
class SplitSequences:
    """mtrec's split per user code: item codes of each part, in order."""

    train: list[np.ndarray]
    valid: list[np.ndarray]
    test: list[np.ndarray]

    def visible(self, user: int, part: int) -> np.ndarray:
        """The history mtrec conditions on (and masks) when it evaluates ``part``."""
        return self.train[user] if part == VALID else np.concatenate(
            [self.train[user], self.valid[user]])


def split_sequences(data: Interactions) -> SplitSequences:
    out: dict[int, list[np.ndarray]] = {TRAIN: [], VALID: [], TEST: []}
    for u in range(len(data.offsets) - 1):
        lo, hi = data.offsets[u], data.offsets[u + 1]
        items, parts = data.item[lo:hi], data.part[lo:hi]
        for part, rows in out.items():
            rows.append(items[parts == part].astype(np.int64))
    return SplitSequences(out[TRAIN], out[VALID], out[TEST])


@dataclass(frozen=True)
class RecBoleExport:
    data_path: Path  # RecBole's data_path; datasets are folders in it
    seq_name: str  # the dataset for sequential models
    pair_name: str  # the dataset for general models (user-item pairs)
    history_path: Path  # JSON lines in test-row order: user, target, history (all tokens)
    test_users: np.ndarray  # user codes, test-row order
    test_targets: np.ndarray  # item codes, test-row order
    rows: dict[str, int]  # rows written per file, e.g. {"seq.train": 123, ...}
    max_len: int = MAX_LEN

    def file(self, dataset: str, part: str) -> Path:
        return self.data_path / dataset / f"{dataset}.{part}.inter"


def export_recbole(prepared: Prepared, out_dir: Path, name: str | None = None,
                   max_len: int = MAX_LEN) -> RecBoleExport:
    """Write both datasets and the test histories under ``out_dir`` (see the module doc)."""
    name = name or _dataset_name(prepared.dataset)
    seqs = split_sequences(prepared.interactions)
    items = ["", *(to_token(str(i)) for i in prepared.catalog.item_ids[1:])]
    users = [to_token(str(u)) for u in prepared.catalog.user_ids]
    _check_unique(items[1:], "item")
    _check_unique(users, "user")
    held = {part: [u for u, s in enumerate(getattr(seqs, part)) if len(s)]
            for part in ("valid", "test")}
    for part, code in (("valid", VALID), ("test", TEST)):
        _check_histories(seqs, held[part], code, users, part)
    pair = f"{name}_pairs"
    rows: dict[str, int] = {}
    for dataset in (name, pair):
        folder = out_dir / dataset
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / f"{dataset}.item", ITEM_HEADER, items[1:])
    rows["seq.train"] = _write(out_dir / name / f"{name}.train.inter", SEQ_HEADER,
                               _seq_train_lines(seqs, users, items, max_len))
    rows["pair.train"] = _write(out_dir / pair / f"{pair}.train.inter", PAIR_HEADER,
                                (f"{users[u]}\t{items[i]}" for u, s in enumerate(seqs.train)
                                 for i in s))
    for part, code in (("valid", VALID), ("test", TEST)):
        rows[f"seq.{part}"] = _write(
            out_dir / name / f"{name}.{part}.inter", SEQ_HEADER,
            (_seq_line(users[u], seqs.visible(u, code)[-max_len:], getattr(seqs, part)[u][0],
                       items) for u in held[part]))
        rows[f"pair.{part}"] = _write(
            out_dir / pair / f"{pair}.{part}.inter", PAIR_HEADER,
            (f"{users[u]}\t{items[getattr(seqs, part)[u][0]]}" for u in held[part]))
    test_users = np.array(held["test"], dtype=np.int64)
    history_path = out_dir / f"{name}.test_history.jsonl"
    _write(history_path, None, (json.dumps(
        {"user": users[u], "target": items[seqs.test[u][0]],
         "history": [items[i] for i in seqs.visible(u, TEST)]}) for u in test_users))
    targets = np.array([seqs.test[u][0] for u in test_users], dtype=np.int64)
    return RecBoleExport(out_dir, name, pair, history_path, test_users, targets, rows, max_len)


def _dataset_name(dataset: str) -> str:
    """A folder-safe dataset name (a store path becomes its stem)."""
    stem = Path(dataset).stem if ("/" in dataset or dataset.endswith(".duckdb")) else dataset
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem) or "data"


def _check_unique(tokens: list[str], what: str) -> None:
    seen: set[str] = set()
    for token in tokens:
        if token in seen:
            raise ExportError(f"two {what}s share the id {from_token(token)!r}")
        seen.add(token)


def _check_histories(seqs: SplitSequences, held: list[int], part: int, users: list[str],
                     name: str) -> None:
    empty = [u for u in held if not len(seqs.visible(u, part))]
    if empty:
        raise ExportError(
            f"{len(empty)} users (first {from_token(users[empty[0]])!r}) have a {name} target "
            "but no earlier interaction; a RecBole sequential model cannot score an empty "
            "history (use a protocol that keeps every held-out user in training)")


def _seq_line(user: str, history: np.ndarray, target: int, items: list[str]) -> str:
    return f"{user}\t{' '.join(items[i] for i in history)}\t{items[target]}"


def _seq_train_lines(seqs: SplitSequences, users: list[str], items: list[str],
                     max_len: int) -> Iterator[str]:
    for u, seq in enumerate(seqs.train):
        for t in range(1, len(seq)):
            yield _seq_line(users[u], seq[max(0, t - max_len):t], seq[t], items)


def _write(path: Path, header: str | None, lines: Iterator[str] | list[str]) -> int:
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        if header is not None:
            fh.write(header + "\n")
        for line in lines:
            fh.write(line + "\n")
            count += 1
    return count


# --- reading the files back -------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One data line of an atomic file, ids decoded; ``line`` is 1-based (the header is 1)."""

    line: int
    user: str
    target: str
    history: tuple[str, ...] = ()


def read_rows(path: Path, header: str) -> list[Row]:
    """The rows of a ``.inter`` file written by :func:`export_recbole`."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != header:
        raise ExportError(f"{path}:1: header {lines[0] if lines else ''!r}, expected {header!r}")
    width = header.count("\t") + 1
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        cols = line.split("\t")
        if len(cols) != width:
            raise ExportError(f"{path}:{n}: {len(cols)} columns, expected {width}: {line!r}")
        history = tuple(from_token(t) for t in cols[1].split(" ") if t) if width == 3 else ()
        rows.append(Row(n, from_token(cols[0]), from_token(cols[-1]), history))
    return rows


def check_round_trip(prepared: Prepared, export: RecBoleExport) -> dict[str, int]:
    """Read every exported file back, rebuild per user the training sequence, the valid and
    test targets, the histories and the masked items, and check them against ``prepared``'s
    split.  Raises :class:`ExportError` naming the first differing user, file and line;
    returns the rows read per file."""
    seqs = split_sequences(prepared.interactions)
    items = [str(i) for i in prepared.catalog.item_ids]
    users = [str(u) for u in prepared.catalog.user_ids]
    ids = _Ids(items, users, {u: k for k, u in enumerate(users)})
    for dataset in (export.seq_name, export.pair_name):
        _check_item_file(export.data_path / dataset / f"{dataset}.item", items[1:])
    counts: dict[str, int] = {}
    pair_path = export.file(export.pair_name, "train")
    train = _grouped(read_rows(pair_path, PAIR_HEADER), ids, pair_path, counts, "pair.train")
    _compare(ids, "training sequence", pair_path, train,
             [[items[i] for i in s] for s in seqs.train])
    _check_seq_train(export, seqs, ids, counts)
    for part, code in (("valid", VALID), ("test", TEST)):
        expected = [[items[s[0]]] if len(s) else [] for s in getattr(seqs, part)]
        for kind, dataset in (("pair", export.pair_name), ("seq", export.seq_name)):
            path = export.file(dataset, part)
            header = PAIR_HEADER if kind == "pair" else SEQ_HEADER
            got = _grouped(read_rows(path, header), ids, path, counts, f"{kind}.{part}")
            _compare(ids, f"{part} target", path, got, expected)
            if kind == "seq":
                _check_histories_read(ids, path, got, [
                    [items[i] for i in seqs.visible(u, code)[-export.max_len:]]
                    for u in range(len(users))], f"{part} history")
    _check_history_file(export, seqs, ids)
    if counts != {k: v for k, v in export.rows.items() if k in counts}:
        raise ExportError(f"rows read back {counts} differ from rows written {export.rows}")
    return counts


@dataclass(frozen=True)
class _Ids:
    items: list[str]  # by item code
    users: list[str]  # by user code
    user_code: dict[str, int]

    def who(self, u: int) -> str:
        return f"user {self.users[u]!r} (code {u})"


def _check_item_file(path: Path, expected: list[str]) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines[0] != ITEM_HEADER:
        raise ExportError(f"{path}:1: header {lines[0]!r}, expected {ITEM_HEADER!r}")
    got = [from_token(t) for t in lines[1:] if t]
    for n, (want, have) in enumerate(zip(expected, got, strict=False), start=2):
        if want != have:
            raise ExportError(f"{path}:{n}: item {have!r}, expected catalog item {want!r}")
    if len(got) != len(expected):
        raise ExportError(f"{path}: {len(got)} items, the catalog has {len(expected)}")


def _grouped(rows: list[Row], ids: _Ids, path: Path, counts: dict[str, int],
             key: str) -> dict[int, list[Row]]:
    out: dict[int, list[Row]] = {}
    for row in rows:
        if row.user not in ids.user_code:
            raise ExportError(f"{path}:{row.line}: unknown user {row.user!r}")
        out.setdefault(ids.user_code[row.user], []).append(row)
    counts[key] = len(rows)
    return out


def _compare(ids: _Ids, what: str, path: Path, got: dict[int, list[Row]],
             expected: list[list[str]]) -> None:
    """Per user (in code order), the targets of the user's rows against ``expected``."""
    for u, want in enumerate(expected):
        rows = got.get(u, [])
        have = [r.target for r in rows]
        if have == want:
            continue
        k = next((k for k, (a, b) in enumerate(zip(want, have, strict=False)) if a != b),
                 min(len(want), len(have)))
        where = (f"{path}:{rows[k].line}" if k < len(rows) else
                 f"{path}: after line {rows[-1].line}" if rows else f"{path}: no row")
        raise ExportError(f"round trip: {ids.who(u)}: {what} differs at {where}: position {k} "
                          f"expected {want[k] if k < len(want) else None!r}, "
                          f"got {have[k] if k < len(have) else None!r}")


def _check_histories_read(ids: _Ids, path: Path, got: dict[int, list[Row]],
                          expected: list[list[str]], what: str) -> None:
    for u in sorted(got):
        row = got[u][0]
        if list(row.history) != expected[u]:
            raise ExportError(f"round trip: {ids.who(u)}: {what} differs at {path}:{row.line}: "
                              f"expected {expected[u]}, got {list(row.history)}")


def _check_seq_train(export: RecBoleExport, seqs: SplitSequences, ids: _Ids,
                     counts: dict[str, int]) -> None:
    """Rebuild each user's training sequence from the sequential train rows (the first row's
    history, then every row's target) and check every row's history against it."""
    path = export.file(export.seq_name, "train")
    got = _grouped(read_rows(path, SEQ_HEADER), ids, path, counts, "seq.train")
    rebuilt = {u: [*rows[0].history, *(r.target for r in rows)] for u, rows in got.items()}
    as_rows = {u: [Row(line, ids.users[u], item) for line, item in zip(
        [rows[0].line] * len(rows[0].history) + [r.line for r in rows], rebuilt[u], strict=True)]
        for u, rows in got.items()}
    _compare(ids, "training sequence (sequential rows)", path, as_rows,
             [[ids.items[i] for i in s] if len(s) > 1 else [] for s in seqs.train])
    for u, rows in got.items():
        for k, row in enumerate(rows):
            start = len(rows[0].history) + k
            want = rebuilt[u][max(0, start - export.max_len):start]
            if list(row.history) != want or start != k + 1:
                raise ExportError(f"round trip: {ids.who(u)}: train history differs at "
                                  f"{path}:{row.line}: expected {want}, got {list(row.history)}")


def _check_history_file(export: RecBoleExport, seqs: SplitSequences, ids: _Ids) -> None:
    path = export.history_path
    test_users = [u for u, s in enumerate(seqs.test) if len(s)]
    lines = [ln for ln in path.read_text(encoding="utf-8").split("\n") if ln]
    if len(lines) != len(test_users):
        raise ExportError(f"{path}: {len(lines)} lines, expected one per test user "
                          f"({len(test_users)})")
    for n, (line, u) in enumerate(zip(lines, test_users, strict=True), start=1):
        entry = json.loads(line)
        want = [ids.items[i] for i in seqs.visible(u, TEST)]
        have = (from_token(entry["user"]), from_token(entry["target"]),
                [from_token(t) for t in entry["history"]])
        if have != (ids.users[u], ids.items[seqs.test[u][0]], want):
            raise ExportError(f"round trip: {ids.who(u)}: masked history differs at "
                              f"{path}:{n}: expected target {ids.items[seqs.test[u][0]]!r} "
                              f"and history {want}, got {have}")


def main() -> None:
    from mtrec.run_config import load_run_config
    from mtrec.train.run import prepare_run

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--protocol", default=None)
    args = parser.parse_args()
    overrides = {"data.dataset": args.dataset}
    if args.protocol:
        overrides["data.protocol"] = args.protocol
    prepared = prepare_run(load_run_config(None, **overrides))
    export = export_recbole(prepared, args.out_dir)
    check_round_trip(prepared, export)
    print(json.dumps({"data_path": str(export.data_path), "rows": export.rows}))


if __name__ == "__main__":
    main()
