"""The README's "Bring your own data" paths, run as written: the commands are parsed from
README.md (not retyped) and run in a folder holding small files of each path's shape
(tests/readme_files.py), through import, train, eval, serve and a request to the service."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from typer.testing import CliRunner

from mtrec.bundle import read_meta
from mtrec.cli import app
from mtrec.data.store import Store
from tests.readme_files import WRITERS

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"<!-- readme-path: ([\w-]+) -->\s*```bash\n(.*?)```", re.S)


def readme_paths() -> dict[str, list[list[str]]]:
    """Each marked block of the README as its commands, split as a shell would."""
    paths = {}
    for name, body in BLOCK.findall(README.read_text(encoding="utf-8")):
        joined = body.replace("\\\n", " ")
        paths[name] = [shlex.split(line, comments=True) for line in joined.splitlines()
                       if line.strip() and not line.lstrip().startswith("#")]
    return paths


PATHS = readme_paths()


def test_the_readme_has_the_three_paths() -> None:
    assert set(PATHS) == {"sequence", "multi-behaviour", "rating"}
    for commands in PATHS.values():
        verbs = [c[1] for c in commands if c[0] == "mtrec"]
        assert verbs[0] == "data" and {"train", "eval", "serve"} <= set(verbs), verbs
        assert commands[-1][0] == "curl"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``mtrec serve ... &`` from the README, on a free port instead of the written one."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.port = _free_port()
        self.written_port = int(args[args.index("--port") + 1]) if "--port" in args else 8000
        self.proc = subprocess.Popen([sys.executable, "-m", "mtrec.cli", *args,
                                      "--port", str(self.port)], cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise AssertionError(f"mtrec serve exited: {out}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/health", timeout=2)
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        raise AssertionError("mtrec serve did not answer /v1/health")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _curl(args: list[str], server: Server) -> tuple[str, dict[str, Any]]:
    """POST the README's ``curl -d BODY URL`` to the running server; the path and answer."""
    url = next(a for a in args[1:] if "/v1/" in a)
    body = args[args.index("-d") + 1]
    headers = dict(h.split(": ", 1) for h in (args[i + 1] for i, a in enumerate(args)
                                              if a == "-H"))
    parts = urlsplit(url if "://" in url else f"http://{url}")
    assert parts.port == server.written_port, "the curl line targets the server's port"
    target = urlunsplit(parts._replace(netloc=f"127.0.0.1:{server.port}"))
    request = urllib.request.Request(target, data=body.encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200
        return parts.path, json.loads(resp.read())


def _run_path(name: str, folder: Path) -> tuple[dict[str, str], str, dict[str, Any], Any]:
    runner, outputs, server = CliRunner(), {}, None
    try:
        for args in PATHS[name]:
            if args[0] == "mtrec" and args[-1] == "&":
                server = Server(args[1:-1], folder)
                server.wait()
            elif args[0] == "mtrec":
                result = runner.invoke(app, args[1:])
                assert result.exit_code == 0, (args, result.output, result.exception)
                outputs[args[1]] = result.output
            else:
                assert server is not None, "the curl line follows mtrec serve"
                path, answer = _curl(args, server)
        return outputs, path, answer, json.loads(args[args.index("-d") + 1])
    finally:
        if server is not None:
            server.stop()


@pytest.fixture()
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MTREC_HOME", raising=False)
    return tmp_path


def test_sequence_path(folder: Path) -> None:
    WRITERS["sequence"](folder)
    outputs, path, answer, request = _run_path("sequence", folder)
    assert "users" in outputs["data"] and "40" in outputs["data"]
    assert "next_item/ndcg@10" in outputs["eval"]
    assert path == "/v1/recommend" and answer["user_id"] == request["user_id"]
    history = {line.split(",")[1] for line in (folder / "events.csv").read_text().splitlines()
               if line.startswith(f"{request['user_id']},")}
    shown = [i["item_id"] for i in answer["items"]]
    assert len(shown) == request["k"] and not set(shown) & history  # seen items filtered


def test_multi_behaviour_path(folder: Path) -> None:
    WRITERS["multi-behaviour"](folder)
    outputs, path, answer, _ = _run_path("multi-behaviour", folder)
    for task in ("purchase", "cart", "collect"):
        assert f"{task}/auc" in outputs["eval"]
    assert (folder / ".mtrec" / "tmall.duckdb").is_file()  # imported under its own name
    assert read_meta(folder / "bundles" / "tmall")["dataset"] == "tmall"
    purchase = [i["scores"]["purchase"] for i in answer["items"]]
    assert path == "/v1/recommend" and purchase == sorted(purchase, reverse=True)


def test_rating_path(folder: Path) -> None:
    WRITERS["rating"](folder)
    outputs, path, answer, request = _run_path("rating", folder)
    with Store.open(folder / ".mtrec" / "films.duckdb") as store:  # the rating is the value
        assert store.query("SELECT DISTINCT behavior FROM events") == [("rate",)]
        assert store.query("SELECT min(value), max(value) FROM events") == [(1.0, 5.0)]
        titled = store.query("SELECT count(*) FROM items WHERE title IS NOT NULL")[0][0]
    assert titled == 30  # items found through --map item.item_id=movie
    assert "rating/rmse" in outputs["eval"]
    assert path == "/v1/score" and answer["items"] == request["items"]
    assert len(answer["scores"]["rating"]) == len(request["items"])
