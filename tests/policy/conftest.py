"""A bundle with a trained policy on the planted shop logs (tests/policy/world.py), trained
once a session with a tiny ranking model and a few REINFORCE iterations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mtrec.policy.commands import train
from mtrec.policy.experiment import PolicyProtocol
from tests.planted import fast_torch, tiny
from tests.policy.world import shop_store

PROTOCOL = PolicyProtocol(horizon_days=10, return_days=(1, 5), candidates=20, valid_days=5,
                          sim_users=60)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """(folder, result of `train`); the bundle is ``folder / "bundle"``."""
    home = tmp_path_factory.mktemp("policy")
    store = shop_store(home)
    ranker = {k: v for k, v in tiny(store).items() if not k.startswith("data.")}
    ranker.pop("model.tasks")
    with fast_torch():
        result = train(str(store), home / "bundle", iterations=3, protocol=PROTOCOL,
                       ranker={**ranker, "train.epochs": 3})
    return home, result
