"""RecBole-CDR peers on a two-domain dataset: export one (source -> target) direction in
RecBole's atomic format from mtrec's split, run ``peers/recbole_cdr_runner.py`` in the
RecBole virtualenv, and score its ranks with mtrec's metrics.

Installing: RecBole-CDR's PyPI wheel (0.1.0) ships no model implementations (its
``get_model("CMF")`` fails), and its code needs RecBole 1.0.1 (under 1.2.1 its config calls
a changed method).  :func:`ensure_lib` puts RecBole 1.0.1 (``pip install --no-deps
--target``) and the ``recbole_cdr`` package of the RecBole-CDR repository (a checkout named
by ``$MTREC_RECBOLE_CDR_SRC``) into ``.mtrec/peers/recbole-cdr-lib``, which the runner puts
ahead of the RecBole virtualenv's own packages (torch, numpy, pandas, scipy).  Training:
both domains (``BOTH`` mode), early stopping on the target domain's validation NDCG@10
with RecBole's default patience (``stopping_step`` 10), at most 300 epochs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.peers.venv import PEERS_DIR, PeerError, python_of
from mtrec.data.interactions import Prepared
from mtrec.data.split import TEST, TRAIN, VALID
from mtrec.eval.metrics import ranking_metrics

RUNNER = Path(__file__).parent / "peers" / "recbole_cdr_runner.py"
CDR_MODELS = ("CMF", "DTCDR", "CoNet")  # BiTGCF: fails under scipy >= 1.12 (see README)
LIB = PEERS_DIR / "recbole-cdr-lib"


def ensure_lib() -> Path:
    """RecBole 1.0.1 and RecBole-CDR's package in :data:`LIB` (installed once)."""
    if (LIB / "recbole_cdr" / "model" / "cross_domain_recommender").is_dir():
        return LIB
    source = Path(os.environ.get("MTREC_RECBOLE_CDR_SRC", "")) / "recbole_cdr"
    if not (source / "model" / "cross_domain_recommender").is_dir():
        raise PeerError("RecBole-CDR's models are not on PyPI (its 0.1.0 wheel has none): set "
                        "MTREC_RECBOLE_CDR_SRC to a checkout of github.com/RUCAIBox/RecBole-CDR "
                        f"(not found: {source})")
    py = python_of("recbole")
    if not py.is_file():
        raise PeerError(f"{py}: the RecBole virtualenv is missing; run "
                        "`python -m benchmarks.peers.venv recbole` first")
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                    str(LIB), "recbole==1.0.1"], check=True)
    shutil.copytree(source, LIB / "recbole_cdr", dirs_exist_ok=True)
    return LIB


def export_direction(prepared: Prepared, target: str, folder: Path) -> int:
    """Write the atomic files of ``target`` (and its other domain as the source) into
    ``folder``; the number of target test rows."""
    cat, d = prepared.catalog, prepared.interactions
    code = cat.scenarios.index(target)
    users, items = cat.user_ids[d.user], cat.item_ids[d.item]
    own = d.scenario == code

    def write(path: Path, rows: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["user_id:token\titem_id:token"]
        lines += [f"{users[k]}\t{items[k]}" for k in rows]
        path.write_text("\n".join(lines) + "\n")

    write(folder / "source" / "source.inter", np.flatnonzero(~own & (d.part == TRAIN)))
    for part, name in ((TRAIN, "train"), (VALID, "valid"), (TEST, "test")):
        write(folder / "target" / f"target.{name}.inter", np.flatnonzero(own & (d.part == part)))
    seen: dict[str, list[str]] = {}
    for k in np.flatnonzero(own & np.isin(d.part, (TRAIN, VALID))):
        seen.setdefault(str(users[k]), []).append(str(items[k]))
    tests = np.flatnonzero(own & (d.part == TEST))
    with (folder / "target_test.jsonl").open("w") as fh:
        for k in tests:
            fh.write(json.dumps({"user": str(users[k]), "item": str(items[k]),
                                 "mask": seen.get(str(users[k]), [])}) + "\n")
    return len(tests)


def cdr_rows(prepared: Prepared, model: str, target: str, seed: int, workdir: Path,
             epochs: int = 300, stopping_step: int = 10) -> list[dict[str, Any]]:
    """One RecBole-CDR model trained towards ``target``: its test row for that domain."""
    workdir = workdir.resolve()  # the runner runs in it
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    n = export_direction(prepared, target, data)
    out = workdir / "result.json"
    cmd = [str(python_of("recbole")), "-P", str(RUNNER),  # -P: not its folder (recbole.py)
           "--model", model, "--data-path", str(data),
           "--workdir", str(workdir), "--epochs", str(epochs), "--stopping-step",
           str(stopping_step), "--seed", str(seed), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ensure_lib())}
    with (workdir / "log.txt").open("w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False, env=env,
                              cwd=workdir)  # (RecBole writes its log folders there)
    if proc.returncode != 0:
        tail = (workdir / "log.txt").read_text(errors="replace")[-2000:]
        return [{"scenario": target, "system": f"RecBole-CDR {model}", "error": tail}]
    result = json.loads(out.read_text())
    ranks = np.asarray(result["ranks"], dtype=np.int64)
    if len(ranks) != n:
        raise RuntimeError(f"{model}: {len(ranks)} ranks for {n} test rows")
    metrics = ranking_metrics(ranks)
    curve = result["valid_curve"]
    return [{"scenario": target, "system": f"RecBole-CDR {model}",
             "ndcg@10": float(metrics["ndcg@10"]), "recall@10": float(metrics["recall@10"]),
             "test_users": n, "best_epoch": int(np.argmax(curve)) + 1 if curve else 0,
             "epochs": len(curve), "seconds": result["seconds"],
             "peak_rss_gib": round(result["peak_rss_gib"], 2)}]
