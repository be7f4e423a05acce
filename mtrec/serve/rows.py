"""Tables that grow by rows without copying themselves each time.

The serving engine keeps several item tables (text vectors, item-tower vectors, the
retrieval matrix and its half-precision copies) and a new item adds a row to each.  Built
with ``torch.cat``, every added item copied every table (tens of MB on Amazon Beauty, the
bulk of a ``POST /v1/items``); here a table is the leading rows of a larger buffer, so an
added row costs a copy only when the spare room runs out, and the room then doubles.
"""

from __future__ import annotations

from typing import Any

import torch

MIN_SPARE = 256  # rows of spare room at least, whatever the table's size
SPARE_FRACTION = 16  # and 1/16 of the table's rows


class Rows:
    """A tensor's rows in a buffer with spare room; :attr:`data` is the exact-size view.

    >>> rows = Rows(torch.ones(2, 3))
    >>> rows.resize(4).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    >>> rows.capacity >= 4 + MIN_SPARE - 2
    True
    """

    def __init__(self, data: torch.Tensor) -> None:
        self._n = len(data)
        self._buffer = data.new_empty(with_room(self._n), *data.shape[1:])
        self._buffer[: self._n] = data

    @property
    def data(self) -> torch.Tensor:
        """The table: a view of the buffer's first rows (writes through to it)."""
        return self._buffer[: self._n]

    @property
    def capacity(self) -> int:
        return len(self._buffer)

    def resize(self, n: int) -> torch.Tensor:
        """Grow to ``n`` rows (the new ones zero; never shrinks); returns :attr:`data`."""
        if n > self.capacity:
            buffer = self._buffer.new_empty(max(n, 2 * self.capacity), *self._buffer.shape[1:])
            buffer[: self._n] = self._buffer[: self._n]
            self._buffer = buffer
        if n > self._n:
            self._buffer[self._n: n] = 0
            self._n = n
        return self.data


def with_room(n: int) -> int:
    """Rows to allocate for a table of ``n`` rows that may grow."""
    return n + max(MIN_SPARE, n // SPARE_FRACTION)


class RowsAttribute:
    """A class attribute storing an assigned tensor as :class:`Rows`: reading it gives the
    exact-size view; :func:`rows_of` reaches the buffer to grow it in place."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}_rows"

    def __get__(self, obj: Any, owner: type | None = None) -> torch.Tensor:
        if obj is None:
            raise AttributeError(f"{self.slot[1:-5]} is an attribute of instances")
        rows: Rows = obj.__dict__[self.slot]
        return rows.data

    def __set__(self, obj: Any, value: torch.Tensor) -> None:
        obj.__dict__[self.slot] = Rows(value)


def rows_of(obj: Any, name: str) -> Rows:
    """The :class:`Rows` behind ``obj``'s :class:`RowsAttribute` ``name``."""
    rows: Rows = obj.__dict__[f"_{name}_rows"]
    return rows
