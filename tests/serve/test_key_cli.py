"""``mtrec key`` and the key options of ``mtrec serve``: a key file is made owner-only with
hashes, never keys; a bad file or option stops ``serve`` before any worker starts, naming it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtrec.cli import app
from mtrec.serve.keys import hash_key, load_keys
from tests.serve.conftest import Served

runner = CliRunner()


def test_key_appends_a_hashed_entry_to_an_owner_only_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    made = runner.invoke(app, ["key", "--name", "shop", "--scopes", "read,write:events",
                               "--rate", "5", "--file", str(path)])
    assert made.exit_code == 0, made.output
    secret = made.stdout.split("X-API-Key header): ")[1].split()[0]
    assert secret not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (key,) = load_keys(path)
    assert key.sha256 == hash_key(secret) and key.scopes == {"read", "write:events"}
    again = runner.invoke(app, ["key", "--name", "shop", "--file", str(path)])
    assert again.exit_code != 0 and "already has a key named 'shop'" in again.stderr
    assert len(load_keys(path)) == 1  # nothing appended


@pytest.mark.parametrize(("args", "message"), [
    (["--scopes", "reed"], "field 'scopes'"),
    (["--rate", "-1"], "field 'rate'"),
])
def test_key_refuses_bad_options(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["key", "--name", "x", *args])
    assert result.exit_code != 0 and message in result.stderr


@pytest.mark.parametrize(("extra", "message"), [
    (["--keys", "KEYS"], "keys.toml: key #1"),
    (["--burst-users", "1"], "--burst-users"),
    (["--user-burst", "0"], "--user-burst"),
])
def test_serve_stops_on_a_bad_key_file_or_guard_option(served: Served, tmp_path: Path,
                                                       extra: list[str], message: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # serve hands its settings to uvicorn's workers in the environment: kept to this test
    for name in ("MTREC_API_KEYS_FILE", "MTREC_SERVE_BUNDLE", "MTREC_BURST_USERS"):
        monkeypatch.delenv(name, raising=False)
    keys = tmp_path / "keys.toml"
    keys.write_text("[[key]]\nname = 'a'\nsha256 = 'not-hex'\nscopes = ['read']\n")
    args = [str(keys) if a == "KEYS" else a for a in extra]
    result = runner.invoke(app, ["serve", "--bundle", str(served.bundle), "--port", "1",
                                 *args])
    assert result.exit_code != 0 and message in result.stderr, result.output
    assert "Traceback" not in result.output
    assert "MTREC_API_KEYS_FILE" not in os.environ  # a refused file is not left behind


def test_a_write_key_gets_a_trending_budget_unless_told_otherwise() -> None:
    """A leaked write:events key could put any item in the top 10 with real user ids."""
    made = runner.invoke(app, ["key", "--name", "w", "--scopes", "write:events"])
    assert "trending_budget = 100.0" in made.stdout
    uncapped = runner.invoke(app, ["key", "--name", "w", "--scopes", "write:events",
                                   "--trending-budget", "0"])
    assert "trending_budget" not in uncapped.stdout
    reader = runner.invoke(app, ["key", "--name", "r", "--scopes", "read"])
    assert "trending_budget" not in reader.stdout
