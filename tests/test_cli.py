"""The command line: help, JSON output, readable errors, and the data jobs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtrec.cli import app
from mtrec.data.store import Store

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["data"], ["data", "list"], ["data", "import"],
                                     ["data", "stats"], ["data", "split"], ["demo"],
                                     ["train"], ["eval"], ["recommend"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def _own_files(tmp_path: Path) -> list[str]:
    events = tmp_path / "events.csv"
    rows = ["user,item,t"] + [f"u{u},i{(u + k) % 7},{1_700_000_000 + 60 * k}"
                              for u in range(5) for k in range(6)]
    events.write_text("\n".join(rows) + "\n")
    return ["data", "import", "mine", "--events", str(events), "--map", "user_id=user",
            "--map", "item_id=item", "--map", "ts=t", "--store-dir", str(tmp_path), "--json"]


def test_import_stats_split_json_round_trip(tmp_path: Path) -> None:
    imported = runner.invoke(app, _own_files(tmp_path))
    assert imported.exit_code == 0, imported.output
    summary = json.loads(imported.stdout)
    assert (summary["users"], summary["items"], summary["events"]) == (5, 7, 30)
    assert summary["events_by_behavior"] == {"click": 30}

    stats = runner.invoke(app, ["data", "stats", "mine", "--store-dir", str(tmp_path), "--json"])
    assert json.loads(stats.stdout)["interactions"] == 30

    split = runner.invoke(app, ["data", "split", "mine", "--protocol", "temporal",
                                "--valid-frac", "0.2", "--test-frac", "0.2",
                                "--store-dir", str(tmp_path), "--json"])
    assert split.exit_code == 0, split.output
    parts = json.loads(split.stdout)["parts"]
    assert parts["test"]["events"] == 10  # the last 2 of 6 timestamps, for all 5 users
    assert parts["valid"]["events"] == 5  # the 4th timestamp
    with Store.open(tmp_path / "mine.duckdb") as store:
        assert store.split("temporal").num_rows == 30
        assert store.get_meta("split:temporal")["parts"]["test"]["events"] == 10


def test_tables_render_without_json(tmp_path: Path) -> None:
    args = [a for a in _own_files(tmp_path) if a != "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "Imported mine" in result.stdout
    result = runner.invoke(app, ["data", "split", "mine", "--store-dir", str(tmp_path)])
    assert "split loo" in result.stdout and "train" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["data", "stats", "nope"], "unknown dataset 'nope'"),
    (["data", "import", "../up", "--events", "e.csv", "--map", "user_id=u"], "dataset name"),
    (["data", "import", "ml-100k", "--events", "e.csv"], "is a built-in dataset"),
    (["data", "import", "x", "--items", "i.csv"], "give --events too"),
    (["data", "import", "x", "--events", "e.csv", "--map", "user_id=u", "--map", "item_id=i",
      "--map", "keep_extra_columns=maybe"], "expected true or false"),
    (["data", "import", "nope"], "unknown dataset 'nope'"),
    (["data", "import", "x", "--events", "e.csv", "--map", "user_id"], "expected FIELD=COLUMN"),
    (["data", "split", "x", "--protocol", "random"], "unknown split protocol"),
])
def test_errors_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, [*args, "--store-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_quoted_csv_fields_are_read(tmp_path: Path) -> None:
    """Regression: a comma inside a quoted title sent the item and its events to quarantine."""
    (tmp_path / "items.csv").write_text('sku,name\na,"Apple, red"\nb,"Banana"\n')
    (tmp_path / "events.csv").write_text("u,i\nx,a\nx,b\n")
    result = runner.invoke(app, [
        "data", "import", "quoted", "--events", str(tmp_path / "events.csv"),
        "--items", str(tmp_path / "items.csv"), "--map", "user_id=u", "--map", "item_id=i",
        "--map", "item.item_id=sku", "--map", "item.title=name", "--store-dir", str(tmp_path),
        "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["events"] == 2
    with Store.open(tmp_path / "quoted.duckdb") as store:
        titles = store.query("SELECT title FROM items ORDER BY item_id")
    assert titles == [("Apple, red",), ("Banana",)]


def test_list_reports_found_and_imported(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "list", "--data-root", str(tmp_path),
                                 "--store-dir", str(tmp_path), "--json"])
    listing = json.loads(result.stdout)
    names = {d["name"]: d for d in listing["datasets"]}
    assert {"amazon-beauty", "amazon-scientific", "amazon-office", "ml-100k", "jdata",
            "ali-ccp-sample", "aliexpress-sample"} <= set(names)
    assert not names["ml-100k"]["found"] and names["ml-100k"]["url"].endswith("ml-100k.zip")
