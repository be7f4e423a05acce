"""Imports point one way: serving reads bundles without the training pipeline."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mtrec"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_serve_module_imports_training() -> None:
    offenders = {str(p.relative_to(PACKAGE)): sorted(n for n in _imports(p)
                                                     if n.startswith("mtrec.train"))
                 for p in (PACKAGE / "serve").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_models_and_rank_never_import_serve_or_train() -> None:
    for part in ("models", "tasks", "rank", "eval", "data", "text"):
        for path in (PACKAGE / part).rglob("*.py"):
            bad = [n for n in _imports(path) if n.startswith(("mtrec.serve", "mtrec.train"))]
            assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_the_app_loads_without_the_trainer() -> None:
    code = ("import sys, mtrec.serve.app, mtrec.serve.engine, mtrec.recommender; "
            "print(sorted(m for m in sys.modules if m.startswith('mtrec.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
