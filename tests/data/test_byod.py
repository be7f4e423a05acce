"""Bring your own data as a new user types it: one regression test per friction found by
following only the README (each test names the friction it covers), and every shipped
format imported under a dataset's own name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtrec.cli import app
from mtrec.data.imports import load_dataset
from mtrec.data.sources.base import LoadContext, SourceError
from mtrec.data.sources.formats import FORMATS, prefix
from mtrec.data.sources.generic import load_generic
from mtrec.data.sources.mapping import ColumnMapping
from mtrec.data.store import Store
from tests.data.malformed_helpers import NAMES, build
from tests.readme_files import write_sequence
from tests.test_readme_paths import PATHS

runner = CliRunner()


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


def _fail(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, (args, result.output, result.exception)
    return result.stderr


def test_friction1_canonical_columns_need_no_mapping(tmp_path: Path) -> None:
    """Friction 1: `data import toys --events events.csv --items items.csv` failed with
    "--map: missing required key(s) ['user_id', 'item_id']" though the columns carry those
    names, blaming --map when none was given."""
    write_sequence(tmp_path)
    home = str(tmp_path / "home")
    _invoke("data", "import", "toys", "--events", str(tmp_path / "events.csv"),
            "--items", str(tmp_path / "items.csv"), "--store-dir", home)
    with Store.open(Path(home) / "toys.duckdb") as store:
        assert store.count("events") == len((tmp_path / "events.csv").read_text()
                                            .splitlines()) - 1
        # the items file's `categories` column is the canonical `category`
        assert store.query("SELECT count(*) FROM items WHERE category = 'cat0'")[0][0] == 10
    (tmp_path / "bad.csv").write_text("uid,item_id\nu1,i1\n")
    message = _fail("data", "import", "bad", "--events", str(tmp_path / "bad.csv"),
                    "--store-dir", home)
    assert "bad.csv:1: no user_id column: the header is ['uid', 'item_id']" in message
    assert "--map user_id=COLUMN" in message


def test_friction2_an_order_column_orders_events(tmp_path: Path) -> None:
    """Friction 2: there was no mapping key for an order column (`--map seq=seq` was an
    unknown key); order silently came from row order."""
    (tmp_path / "ev.csv").write_text("uid,sku,step\nu1,c,3\nu1,a,1\nu2,x,2\nu1,b,2\n")
    home = str(tmp_path / "home")
    _invoke("data", "import", "shop", "--events", str(tmp_path / "ev.csv"),
            "--map", "user_id=uid", "--map", "item_id=sku", "--map", "seq=step",
            "--store-dir", home)
    with Store.open(Path(home) / "shop.duckdb") as store:
        order = store.query("SELECT item_id FROM events WHERE user_id = 'u1' ORDER BY seq")
    assert [r[0] for r in order] == ["a", "b", "c"]
    # a timestamp comes first, seq breaks its ties
    (tmp_path / "ts.csv").write_text("user_id,item_id,ts,seq\nu1,late,200,1\nu1,b,100,3\n"
                                     "u1,a,100,2\n")
    result = load_generic(ColumnMapping(events=str(tmp_path / "ts.csv")), LoadContext("t"))
    rows = sorted(zip(result.events.column("ts").to_pylist(),
                      result.events.column("seq").to_pylist(),
                      result.events.column("item_id").to_pylist(), strict=True))
    assert [r[2] for r in rows] == ["a", "b", "late"]
    # neither column: imported in row order, and the import says so
    (tmp_path / "plain.csv").write_text("user_id,item_id\nu1,a\nu1,b\n")
    output = _invoke("data", "import", "plain", "--events", str(tmp_path / "plain.csv"),
                     "--store-dir", home, "--json")
    assert "events are ordered by their row order in the file" in output
    # a row whose order cannot be read is quarantined with its line; the others are kept
    (tmp_path / "ev.csv").write_text("uid,sku,step\nu1,c,first\nu1,a,1\nu1,b,2\n")
    result = load_generic(ColumnMapping(events=str(tmp_path / "ev.csv"), user_id="uid",
                                        item_id="sku", seq="step"), LoadContext("t"))
    assert result.events.num_rows == 2
    assert [(b.line, b.reason) for b in result.log.bad_rows] == [(2, "non-numeric step: 'first'")]


def test_friction3_train_finds_an_imported_dataset_by_name(tmp_path: Path) -> None:
    """Friction 3: `train --dataset toys --store-dir DIR` failed with "unknown dataset
    'toys': not a registered dataset ... and no store file at toys"."""
    write_sequence(tmp_path)
    home = str(tmp_path / "home")
    _invoke("data", "import", "toys", "--events", str(tmp_path / "events.csv"),
            "--store-dir", home)
    out = str(tmp_path / "bundle")
    _invoke("train", "--dataset", "toys", "--store-dir", home, "--no-text", "--epochs", "1",
            "--out", out)
    _invoke("eval", "--bundle", out, "--store-dir", home)
    # the bundle remembers its store: eval without --store-dir finds it (a new user's miss)
    assert "next_item/ndcg@10" in _invoke("eval", "--bundle", out)
    assert "toys" in _invoke("data", "stats", "toys", "--store-dir", home)
    message = _fail("train", "--dataset", "toys", "--store-dir", str(tmp_path / "elsewhere"))
    assert "not imported into" in message and "mtrec data import toys" in message
    assert "give this command that --store-dir" in message


def test_friction4_a_shipped_format_imports_under_its_own_name(tmp_path: Path) -> None:
    """Friction 4: `data import tmall --source DIR` (JData's pair-file layout) was refused
    as an unknown dataset; it worked only as `jdata`, and the bundle was labelled jdata."""
    folder = build(tmp_path, "jdata")
    home = str(tmp_path / "home")
    _invoke("data", "import", "tmall", "--format", "pairs", "--source", str(folder),
            "--store-dir", home)
    with Store.open(Path(home) / "tmall.duckdb") as store:
        assert store.count("events") == 14
    assert not (Path(home) / "jdata.duckdb").exists()
    assert "unknown format 'tsv'" in _fail("data", "import", "x", "--format", "tsv",
                                           "--source", str(folder), "--store-dir", home)
    assert "give --source" in _fail("data", "import", "x", "--format", "pairs",
                                    "--store-dir", home)
    listed = _invoke("data", "formats", "--json")
    assert all(f'"{name}"' in listed for name in [*FORMATS, "generic"])


def test_friction5_the_readme_trains_a_multi_behaviour_dataset() -> None:
    """Friction 5: the README had no `mtrec train` command for a multi-task behaviour
    dataset; the working one was only in a benchmark script.  (tests/test_readme_paths.py
    runs it.)"""
    train = next(c for c in PATHS["multi-behaviour"] if c[:2] == ["mtrec", "train"])
    tasks = train[train.index("--tasks") + 1].split(",")
    assert len(tasks) >= 2 and train[train.index("--protocol") + 1] == "pair"


def test_friction6_no_third_party_progress_bar_unless_verbose(tmp_path: Path) -> None:
    """Friction 6: every model load printed the text encoder's "Loading weights" bar into
    the CLI's output."""
    write_sequence(tmp_path)
    home = str(tmp_path / "home")
    _invoke("data", "import", "toys", "--events", str(tmp_path / "events.csv"),
            "--items", str(tmp_path / "items.csv"), "--store-dir", home)

    # the in-process CLI calls above set the quiet flags in this process's environment
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")}

    def train(*flags: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "mtrec.cli", *flags, "train", "--dataset", "toys",
             "--store-dir", home, "--epochs", "1", "--out", str(tmp_path / "b")],
            capture_output=True, text=True, cwd=tmp_path, timeout=300, check=True, env=env)
        return done.stdout + done.stderr

    assert "Loading weights" not in train()
    assert "Loading weights" in train("--verbose")


# Each shipped format, read from a tiny folder in that layout under another dataset's name:
# the same tables as the registered dataset that uses it.
FORMAT_FOLDERS = {"p5": "amazon-beauty", "unisrec": "amazon-scientific",
                  "recbole": "ml-100k", "rechorus": "amazon-office",
                  "grouplens": "ml-100k-grouplens", "pairs": "jdata",
                  "ali-ccp": "ali-ccp-sample"}


@pytest.mark.parametrize("fmt,folder_name", sorted(FORMAT_FOLDERS.items()))
def test_every_format_imports_under_any_name(tmp_path: Path, fmt: str, folder_name: str
                                             ) -> None:
    folder = build(tmp_path, folder_name)
    registered = load_dataset(NAMES[folder_name], source=str(folder))
    mine = load_dataset("mine", source=str(folder), source_format=fmt)
    assert mine.dataset == "mine"
    for table in ("events", "items", "users"):
        theirs = getattr(registered, table).to_pylist()
        assert getattr(mine, table).to_pylist() == theirs, table


def test_aliexpress_format_and_file_prefixes(tmp_path: Path) -> None:
    """The layouts that name files after the dataset read the name from the folder."""
    (tmp_path / "shop_train_sample.csv").write_text(
        "search_id,click,conversion,f1\n1,1,0,0.5\n2,0,0,0.1\n1,1,1,0.2\n")
    result = load_dataset("shop", source=str(tmp_path), source_format="aliexpress")
    assert sorted(result.summary()["events_by_behavior"].items()) == [
        ("click", 2), ("purchase", 1), ("view", 3)]
    assert prefix(tmp_path, "_train_sample.csv") == "shop"
    (tmp_path / "more_train_sample.csv").write_text("x\n")
    with pytest.raises(SourceError, match=r"expected exactly one NAME_train_sample\.csv file, "
                                          r"found more_train_sample\.csv, shop_train_sample"):
        prefix(tmp_path, "_train_sample.csv")
    assert not FORMATS.keys() - {*FORMAT_FOLDERS, "aliexpress"}  # every format is tested


def test_generic_format_reads_a_folder_of_canonical_files(tmp_path: Path) -> None:
    """`--format generic --source DIR` is the --events/--items path over DIR/events.* and
    DIR/items.*, with the same defaults and errors."""
    write_sequence(tmp_path)
    home = str(tmp_path / "home")
    _invoke("data", "import", "mine", "--format", "generic", "--source", str(tmp_path),
            "--store-dir", home)
    with Store.open(Path(home) / "mine.duckdb") as store:
        assert store.query("SELECT count(*) FROM items WHERE title IS NOT NULL")[0][0] == 30
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no events.csv" in _fail("data", "import", "mine", "--format", "generic",
                                          "--source", str(empty), "--store-dir", home)


def test_mapping_file_keys_and_command_line_files(tmp_path: Path) -> None:
    """A new user's tries: the README's mapping-file example imports; `--events` with
    `--mapping` replaces the file's events key instead of being refused; the command-line
    spellings in a file get a hint to the file's keys."""
    (tmp_path / "ev.csv").write_text("uid,sku,action,time\nu1,a,pv,1\nu1,b,buy,2\nu2,a,pv,3\n")
    (tmp_path / "it.csv").write_text("sku,name\na,red lipstick\nb,blue kite\n")
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({
        "user_id": "uid", "item_id": "sku", "behavior": "action", "ts": "time",
        "behavior_values": {"pv": "view", "buy": "purchase"},
        "items": "it.csv", "item_columns": {"title": "name"}}))
    home = str(tmp_path / "home")
    _invoke("data", "import", "shop", "--mapping", str(mapping), "--events",
            str(tmp_path / "ev.csv"), "--store-dir", home)
    with Store.open(Path(home) / "shop.duckdb") as store:
        assert dict(store.query("SELECT behavior, count(*) FROM events GROUP BY 1")) == {
            "view": 2, "purchase": 1}
        assert store.query("SELECT title FROM items WHERE item_id = 'b'") == [("blue kite",)]
    assert "missing required key 'events'" in _fail(
        "data", "import", "shop", "--mapping", str(mapping), "--store-dir", home)
    mapping.write_text(json.dumps({"events": "ev.csv", "behavior_value": ["pv:view"],
                                   "item.title": "name"}))
    message = _fail("data", "import", "shop", "--mapping", str(mapping), "--store-dir", home)
    assert '"behavior_values", a table' in message and '"item_columns", a table' in message


def test_errors_name_the_file_role_the_mapping_and_a_near_column(tmp_path: Path) -> None:
    (tmp_path / "ev.csv").write_text("uid,sku\nu1,a\n")
    home = str(tmp_path / "home")
    missing = _fail("data", "import", "x", "--events", str(tmp_path / "nope.csv"),
                    "--store-dir", home)
    assert "nope.csv: events file not found" in missing
    assert "items file not found" in _fail(
        "data", "import", "x", "--events", str(tmp_path / "ev.csv"), "--items",
        str(tmp_path / "gone.csv"), "--map", "user_id=uid", "--map", "item_id=sku",
        "--store-dir", home)
    typo = _fail("data", "import", "x", "--events", str(tmp_path / "ev.csv"),
                 "--map", "user_id=uidd", "--map", "item_id=sku", "--store-dir", home)
    assert "ev.csv:1: user_id=uidd: no column 'uidd'" in typo and "did you mean 'uid'?" in typo
    (tmp_path / "it.csv").write_text("code,title\na,red\n")
    assert "no item id column" in _fail(
        "data", "import", "x", "--events", str(tmp_path / "ev.csv"), "--items",
        str(tmp_path / "it.csv"), "--map", "user_id=uid", "--map", "item_id=sku",
        "--store-dir", home)


def test_data_list_shows_datasets_imported_under_their_own_names(tmp_path: Path) -> None:
    write_sequence(tmp_path)
    home = str(tmp_path / "home")
    _invoke("data", "import", "toys", "--events", str(tmp_path / "events.csv"),
            "--items", str(tmp_path / "items.csv"), "--store-dir", home)
    listed = json.loads(_invoke("data", "list", "--store-dir", home, "--json"))
    toys = [d for d in listed["datasets"] if d["name"] == "toys"]
    assert toys and toys[0]["imported"] is True
    stats = json.loads(_invoke("data", "stats", "toys", "--store-dir", home, "--json"))
    assert stats["items_with_text"] == 30  # titles count as text: the model reads them
