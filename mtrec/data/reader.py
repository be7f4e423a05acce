"""Line-oriented reading of source files that never drops a row in silence.

Every row that cannot be read is either raised (strict mode) or quarantined with its
file, line number, reason and raw text, so an import can report exactly what it left out.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ProgressFn = Callable[[int], None]


class DataFormatError(ValueError):
    """A source file cannot be read; the message starts with ``file:line:``."""


class RowError(ValueError):
    """One row is malformed; the reader turns it into a quarantine entry."""


@dataclass(frozen=True)
class BadRow:
    file: str
    line: int
    reason: str
    raw: str


@dataclass
class RowLog:
    """Collects the rows an import could not use.

    ``strict`` turns the first bad row into a :class:`DataFormatError`.  Otherwise bad
    rows are kept (see :attr:`bad_rows`) and an import fails only when more than
    ``max_bad_fraction`` of a file's rows are bad, which means the format is wrong.
    """

    strict: bool = False
    max_bad_fraction: float = 0.5
    bad_rows: list[BadRow] = field(default_factory=list)
    rows_read: Counter[str] = field(default_factory=Counter)

    def bad(self, file: str | Path, line: int, reason: str, raw: str = "") -> None:
        if self.strict:
            raise DataFormatError(f"{file}:{line}: {reason}")
        self.bad_rows.append(BadRow(str(file), line, reason, raw[:500]))

    @contextlib.contextmanager
    def row(self, file: str | Path, line: int, raw: str) -> Iterator[None]:
        """Run a row's parsing; a :class:`RowError` inside becomes a quarantined row."""
        try:
            yield
        except RowError as exc:
            self.bad(file, line, str(exc), raw)

    def reasons(self) -> Counter[str]:
        """Bad-row counts by reason category (the text before the first colon or quote).

        >>> log = RowLog()
        >>> for item in ("a", "b"):
        ...     log.bad("f.csv", 2, f"unknown item {item!r} (not in items.csv)")
        >>> dict(log.reasons())
        {'unknown item': 2}
        """
        return Counter(reason_category(b.reason) for b in self.bad_rows)

    def check(self, file: str | Path) -> None:
        """Fail when most of a file's rows were bad: the file is not in the expected format."""
        name = str(file)
        bad = [b for b in self.bad_rows if b.file == name]
        total = self.rows_read[name]
        if total and len(bad) / total > self.max_bad_fraction:
            first = bad[0]
            raise DataFormatError(
                f"{name}:{first.line}: {len(bad)} of {total} rows are malformed "
                f"(first: {first.reason}); is this the right file format?"
            )


def reason_category(reason: str) -> str:
    """The reason without its specifics: the text before the first colon or quote."""
    return re.split(r"[:'\"]", reason, maxsplit=1)[0].strip()


def iter_lines(
    path: str | Path, log: RowLog, *, progress: ProgressFn | None = None,
    encoding: str = "utf-8",
) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank line of a text file (UTF-8 default).

    Lines that are not valid UTF-8 and blank lines inside the file are quarantined.  An
    empty file is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}:0: file not found")
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}:1: file is empty")
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if progress is not None:
                progress(len(raw))
            log.rows_read[str(path)] += 1
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                log.bad(path, number, f"bad encoding: not {encoding} at byte {exc.start}",
                        raw.decode("utf-8", "replace").rstrip("\r\n"))
                continue
            text = text.rstrip("\r\n")
            if text.lstrip("\ufeff").strip() == "":
                log.bad(path, number, "blank line", text)
                continue
            yield number, text.lstrip("\ufeff") if number == 1 else text


@dataclass(frozen=True)
class Row:
    """One data row of a delimited file, addressed by header name."""

    line: int
    fields: list[str]
    raw: str
    index: dict[str, int]

    def __getitem__(self, name: str) -> str:
        return self.fields[self.index[name]].strip()

    def get(self, name: str, default: str = "") -> str:
        i = self.index.get(name)
        return self.fields[i].strip() if i is not None else default


def iter_table(
    path: str | Path,
    log: RowLog,
    *,
    sep: str,
    required: Sequence[str],
    header: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
    strip_types: bool = False,
    encoding: str = "utf-8",
    quoted: bool = False,
) -> Iterator[Row]:
    """Yield the rows of a delimited file with a header line (or the given ``header``).

    ``strip_types`` removes RecBole's ``:type`` suffixes from header names; ``quoted``
    reads CSV quoting (``"Apple, red"``) within a line.  A header
    with a duplicated or missing required column is an error; a repeated header line in
    the body, or a row with the wrong number of fields, is quarantined.
    """
    path = Path(path)
    lines = iter_lines(path, log, progress=progress, encoding=encoding)
    names: list[str]
    header_line = None
    if header is None:
        first = next(lines, None)
        if first is None:
            raise DataFormatError(f"{path}:1: no header line")
        if first[0] != 1:
            raise DataFormatError(f"{path}:1: unreadable header line (bad encoding or blank)")
        header_line = first[1]
        names = [_clean_name(n, strip_types) for n in _split(header_line, sep, quoted)]
        log.rows_read[str(path)] -= 1  # the header is not a data row
    else:
        names = list(header)
    _check_header(path, names, required)
    index = {n: i for i, n in enumerate(names)}
    for number, text in lines:
        if header_line is not None and text == header_line:
            log.bad(path, number, "repeated header line", text)
            continue
        fields = _split(text, sep, quoted)
        if len(fields) != len(names):
            log.bad(path, number,
                    f"wrong column count: expected {len(names)} fields, found {len(fields)}",
                    text)
            continue
        yield Row(number, fields, text, index)


def _split(text: str, sep: str, quoted: bool) -> list[str]:
    """Split one line; with ``quoted``, as CSV (a field may hold ``sep`` inside quotes).

    >>> _split('a,"Apple, red",""', ",", quoted=True)
    ['a', 'Apple, red', '']
    """
    if not quoted:
        return text.split(sep)
    return next(csv.reader([text], delimiter=sep), [])


def _clean_name(name: str, strip_types: bool) -> str:
    name = name.strip()
    return name.split(":", 1)[0] if strip_types else name


def _check_header(path: Path, names: Sequence[str], required: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataFormatError(f"{path}:1: duplicate column {name!r} in header")
        seen.add(name)
    missing = [r for r in required if r not in seen]
    if missing:
        raise DataFormatError(
            f"{path}:1: missing column(s) {missing} in header; found {list(names)}"
        )


def parse_float(value: str, name: str) -> float:
    """Parse a number or raise :class:`RowError` naming the field.

    >>> parse_float("4.5", "rating")
    4.5
    >>> parse_float("abc", "rating")
    Traceback (most recent call last):
    ...
    mtrec.data.reader.RowError: non-numeric rating: 'abc'
    """
    try:
        out = float(value)
    except ValueError:
        raise RowError(f"non-numeric {name}: {value!r}") from None
    if out != out or out in (float("inf"), float("-inf")):
        raise RowError(f"non-numeric {name}: {value!r}")
    return out


def require_id(value: str, name: str) -> str:
    """Return a stripped id or raise :class:`RowError` when it is empty."""
    value = value.strip()
    if not value:
        raise RowError(f"missing {name}")
    return value
