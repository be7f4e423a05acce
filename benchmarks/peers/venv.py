"""Create a peer's virtualenv once (pinned) and run a runner script inside it.

    python -m benchmarks.peers.venv recbole      # create or check .mtrec/peers/recbole

Each peer gets its own pins, kept out of mtrec's environment.  torch is installed first
and alone so pip takes the CPU wheel instead of the CUDA build.  The runner's own JSON
(written to ``--out``) carries its wall times and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PEERS_DIR = ROOT / ".mtrec" / "peers"
TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")


@dataclass(frozen=True)
class PeerSpec:
    name: str
    first: tuple[str, ...]  # installed alone, first (torch)
    pins: tuple[str, ...]
    probe: str  # a module whose import proves the install
    version_of: tuple[str, ...]  # distributions whose versions go into results


PEERS = {
    "recbole": PeerSpec("recbole", ("torch==2.13.0",),
                        ("recbole==1.2.1", "numpy<2", "pandas<3", "setuptools<81"),
                        "recbole", ("recbole", "torch", "numpy")),
    "rechub": PeerSpec("rechub", ("torch==2.13.0",), ("torch-rechub==0.9.0",),
                       "torch_rechub", ("torch-rechub", "torch", "numpy")),
    "surprise": PeerSpec("surprise", (), ("numpy<2", "scikit-surprise==1.1.4"),
                         "surprise", ("scikit-surprise", "numpy")),
}


class PeerError(RuntimeError):
    """A peer could not be installed or its runner failed; the message has the error text."""


def python_of(name: str) -> Path:
    return PEERS_DIR / name / "bin" / "python"


def _pip(py: Path, args: tuple[str, ...], log: Path) -> None:
    with log.open("a", encoding="utf-8") as fh:
        proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet", *args],
                              stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise PeerError(f"pip install {' '.join(args)} failed in {py.parent.parent} "
                        f"(log {log}):\n{tail}")


def ensure(name: str) -> Path:
    """The peer's python, creating its virtualenv first when it is missing or broken."""
    spec = PEERS[name]
    py = python_of(name)
    if py.exists() and _probe(py, spec):
        return py
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    log = PEERS_DIR / f"{name}.install.log"
    print(f"creating the {name} virtualenv in {py.parent.parent} (log {log})",
          file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(py.parent.parent)], check=True)
    _pip(py, ("--upgrade", "pip"), log)
    if spec.first:
        _pip(py, spec.first, log)
    _pip(py, spec.pins, log)
    if not _probe(py, spec):
        raise PeerError(f"{name}: installed, but `import {spec.probe}` still fails (log {log})")
    return py


def _probe(py: Path, spec: PeerSpec) -> bool:
    return subprocess.run([str(py), "-c", f"import {spec.probe}"], capture_output=True,
                          check=False).returncode == 0


def versions(name: str) -> dict[str, str]:
    code = ("import json, importlib.metadata as m, sys; "
            "print(json.dumps({d: m.version(d) for d in sys.argv[1:]}))")
    out = subprocess.run([str(python_of(name)), "-c", code, *PEERS[name].version_of],
                         capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


def allocator_env() -> dict[str, str]:
    """tcmalloc for every side of a comparison when the machine has it (see ENVIRONMENT.md)."""
    return {"LD_PRELOAD": str(TCMALLOC)} if TCMALLOC.exists() else {}


def run_runner(name: str, script: str, args: list[str], out_json: Path,
               timeout: float | None = None) -> dict[str, Any]:
    """Run ``benchmarks/peers/<script>`` in the peer's virtualenv; its JSON result, with the
    outer wall time and the peer's versions added.  A failure raises PeerError with the
    error text."""
    py = ensure(name)
    env = {**os.environ, **allocator_env(), "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    cmd = [str(py), str(Path(__file__).parent / script), *args, "--out", str(out_json)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise PeerError(f"{name}: {' '.join(cmd)} exited {proc.returncode}:\n"
                        f"{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out_json.read_text(encoding="utf-8"))
    result.update(outer_wall_seconds=round(wall, 1), versions=versions(name),
                  allocator="tcmalloc" if allocator_env() else "glibc")
    return result


def print_rows(rows: list[dict[str, Any]], out: Path | None) -> None:
    """A driver's command-line output: its rows as JSON on stdout, and in ``out`` if given."""
    text = json.dumps(rows, indent=2, default=str)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=sorted(PEERS))
    name = parser.parse_args().peer
    print(ensure(name), versions(name))


if __name__ == "__main__":
    main()
