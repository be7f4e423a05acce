"""Precomputed user states: used only while they equal a fresh tower pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrec.serve.engine import Engine, Event, NewItem
from mtrec.text.encoder import TextEncoder, TextEncoderConfig
from tests.serve.conftest import Served


@pytest.fixture()
def engine(served: Served) -> Engine:
    encoder = TextEncoder.from_config(TextEncoderConfig(model=str(served.encoder_dir),
                                                        bf16=False))
    return Engine.from_bundle(served.bundle, encoder=encoder)


def _fresh(engine: Engine, user: str) -> torch.Tensor:
    return engine._tower_state(engine.history(user))


def test_precomputed_rows_equal_a_pass_over_each_history(engine: Engine,
                                                         served: Served) -> None:
    assert engine.user_states is not None
    for user in served.data.user_ids[:20]:
        row = engine.tower_state(engine.history(user), user)
        assert torch.allclose(row, _fresh(engine, user), atol=1e-5), user
    # and the recommendations they give are those of the per-request path
    user = served.data.user_ids[0]
    history = engine.history(user)
    scen = engine.scenario(None)
    cached = engine.recommend(history, 5, scen, user=user)
    computed = engine.recommend(history, 5, scen)
    assert [h.item_id for h in cached] == [h.item_id for h in computed]


def test_an_event_sends_the_user_to_a_fresh_pass(engine: Engine, served: Served) -> None:
    user = served.data.user_ids[0]
    before = engine.tower_state(engine.history(user), user)
    engine.add_events([Event(user, engine.item_ids[1], "click")])
    after = engine.tower_state(engine.history(user), user)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, _fresh(engine, user), atol=1e-5)


def test_redescribing_an_item_marks_its_users_stale(engine: Engine, served: Served) -> None:
    user = served.data.user_ids[0]
    item = engine.item_ids[engine.history(user)[0].code]
    holders = {u for u in served.data.user_ids
               if item in {engine.item_ids[s.code] for s in engine.history(u)}}
    assert engine.user_states is not None
    engine.upsert_items([NewItem(item, "an entirely different description of it")])
    stale = {u for u in served.data.user_ids
             if engine.user_states.get(engine.rec._user_code[u]) is None}
    assert stale == holders
    row = engine.tower_state(engine.history(user), user)
    assert torch.allclose(row, _fresh(engine, user), atol=1e-5)
    # a brand-new item is in nobody's history: nothing more goes stale
    engine.upsert_items([NewItem("brand-new", "a new product")])
    assert int(np.sum(engine.user_states.stale)) == len(holders)


def test_without_precompute_every_request_runs_the_tower(served: Served) -> None:
    engine = Engine.from_bundle(served.bundle, precompute_users=False)
    user = served.data.user_ids[3]
    assert engine.user_states is None
    assert torch.allclose(engine.tower_state(engine.history(user), user),
                          _fresh(engine, user), atol=1e-6)
    assert engine.similar_users(user, 3)  # the user index computes its own rows
