"""Fixtures of the training tests: one torch thread and no fsync while they run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.planted import fast_torch


@pytest.fixture(scope="module")
def fast() -> Iterator[None]:
    with fast_torch():
        yield
