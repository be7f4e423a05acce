"""Resumable comparisons: each system's result is cached with a fingerprint of what it ran on.

A comparison at convergence can take hours on 2 cores, so it is run one system at a time and
each finished system's row is kept in ``benchmarks/results/runs/<comparison>/<system>.json``
(committed with the results).  Running the comparison again reuses a cached row whose
fingerprint (dataset, protocol, the split itself, the system's configuration and the
versions it ran with) equals the current one, reruns a system whose fingerprint differs and
says which part changed, and runs what is missing.  A row with an error is never reused.
A killed run resumes: mtrec from its last checkpoint (its bundle directory lives under
``.mtrec/bench/``), a RecBole peer from the state its fit saves after every validation
(``.mtrec/bench/<comparison>/rb-<model>-<hash>``).  ``--cached-only`` assembles a
comparison from the finished systems alone, the others listed as not finished.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mtrec.data.interactions import Prepared

RUNS = Path(__file__).parent / "results" / "runs"
Row = dict[str, Any]


def split_fingerprint(prepared: Prepared) -> str:
    """A short hash of the split: every interaction's user, item and part, and the catalog
    with its item texts."""
    d = prepared.interactions
    digest = hashlib.sha256()
    for array in (d.user, d.item, d.part):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    digest.update(prepared.catalog.fingerprint().encode())
    for text in prepared.catalog.texts:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()[:16]


def short_hash(value: Any) -> str:
    """A short stable hash of a JSON-able value (a fingerprint's folder name)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()
                          ).hexdigest()[:10]


def runner_fingerprint() -> str:
    """A short hash of the peer-running code (a change to it reruns the peers)."""
    peers = Path(__file__).parent / "peers"
    digest = hashlib.sha256()
    for path in [*sorted(peers.glob("*.py")), Path(__file__).parent / "export_recbole.py"]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def slug(name: str) -> str:
    """A file name for a system.

    >>> slug("RecBole SASRec"), slug("default (text + ID)")
    ('recbole-sasrec', 'default-text-id')
    """
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# Settings added after runs were cached, with the value at which they change nothing a run
# does: left out of a fingerprint at that value, so that adding them reruns nothing.
INERT = ((("train", "init"), ""),  # from scratch
         (("train", "conflict"), "none"),  # the summed gradient
         (("train", "task_patience"), 0),  # no per-task early stopping
         (("model", "text", "lr"), None),  # None: read only when the encoder is fine-tuned
         (("model", "text", "tune_items"), None),
         (("train", "shuffle_unordered"), False),  # the one fixed order
         (("data", "item_ids"), "shared"))  # (read by multi-source datasets only)


def config_fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    """A run config (as ``to_dict`` gives it) without the inert settings of ``INERT``.

    >>> config_fingerprint({"train": {"init": "", "seed": 0},
    ...                     "model": {"text": {"mode": "frozen", "lr": 1e-4}}})
    {'train': {'seed': 0}, 'model': {'text': {'mode': 'frozen'}}}
    """
    out = json.loads(json.dumps(config))
    for path, inert in INERT:
        *parents, leaf = path
        node = out
        for key in parents:
            node = node.get(key, {})
        if leaf not in node:
            continue
        if inert is None:  # a fine-tuning setting: inert while the encoder is frozen
            inert = node[leaf] if node.get("mode", "frozen") == "frozen" else object()
        if node[leaf] == inert:
            del node[leaf]
    return out


def changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose values differ between two fingerprints.

    >>> changed({"split": "a", "epochs": 4}, {"split": "a", "epochs": 300, "seed": 0})
    ['epochs', 'seed']
    """
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def cached_run(comparison: str, system: str, fingerprint: dict[str, Any],
               run: Callable[[], list[Row]], root: Path = RUNS,
               cached_only: bool = False) -> list[Row]:
    """The rows of ``system`` in ``comparison``: cached when the fingerprint matches, else
    from ``run()`` (then cached unless a row carries an error).  ``cached_only``: never run;
    a system without a matching cache gives one row marked ``pending``."""
    path = root / comparison / f"{slug(system)}.json"
    # as it is stored: JSON has no tuples, so a (n, d) grid read back is a list
    fingerprint = json.loads(json.dumps(fingerprint, default=str))
    why = "no cached result"
    if path.is_file():
        record = json.loads(path.read_text())
        diff = changed(record.get("fingerprint", {}), fingerprint)
        if not diff:
            _log(f"{system}: reusing the cached result ({path})")
            return list(record["rows"])
        why = f"the cached result ran on a different {', '.join(diff)}"
        _log(f"{system}: {why}{'' if cached_only else ': rerunning'}")
    if cached_only:
        return [{"system": system, "model": "", "kind": "pending", "pending": why}]
    rows = run()
    if rows and not any("error" in r for r in rows):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"comparison": comparison, "system": system,
                                   "fingerprint": fingerprint, "rows": rows},
                                  indent=2, default=str) + "\n")
        tmp.replace(path)
    return rows


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def result_record(experiment: str, doc: str, argv: list[str] | None, started: float,
                  **parts: Any) -> dict[str, Any]:
    """A benchmark's results file: its protocol (the third paragraph of its module
    docstring), ``parts`` (rows, summary, ...), wall time, machine and command."""
    from benchmarks.machine import describe

    return {"experiment": experiment, "protocol": doc.split("\n\n")[2], **parts,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "machine": describe(("mtrec", "torch")),
            "command": f"python -m benchmarks {experiment} " + " ".join(argv or [])}
