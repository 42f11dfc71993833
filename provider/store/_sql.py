"""One SQL dialect for domain code: the portable subset, and its translation for SQLite.

Domain code writes PostgreSQL-flavoured SQL with psycopg's named parameters; this module
turns it into what SQLite accepts. Pure functions, no I/O.

The rules of the subset (documented for domain engineers in `provider/store/__init__.py`):

* parameters are named, `%(name)s`, and passed as a mapping; a literal `%` is written `%%`
  (psycopg's rule). Positional `%s` and `?`/`:name` styles are refused on both backends, so a
  mistake shows on SQLite too and not only in the PostgreSQL run;
* row-lock clauses (`FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`, `FOR KEY SHARE`, with
  `OF t, ...`, `NOWAIT`, `SKIP LOCKED`) are kept for PostgreSQL and dropped for SQLite, where a
  write transaction (BEGIN IMMEDIATE) already holds the one database-wide write lock, so every
  row a writer reads is as good as locked. This lets the job claim of ha-jobs-style.md B.2
  (`... FOR UPDATE SKIP LOCKED`) be written once.
"""

from __future__ import annotations

import functools
import re
from typing import Literal

__all__ = ["Dialect", "translate"]

Dialect = Literal["sqlite", "postgresql"]

# A placeholder, an escaped percent, or any other percent (an error).
_PERCENT = re.compile(r"%\((?P<name>[A-Za-z_][A-Za-z0-9_]*)\)s|%%|%")

_ROW_LOCK = re.compile(
    r"\s+FOR\s+(?:NO\s+KEY\s+UPDATE|KEY\s+SHARE|UPDATE|SHARE)"
    r"(?:\s+OF\s+[A-Za-z_][A-Za-z0-9_.]*(?:\s*,\s*[A-Za-z_][A-Za-z0-9_.]*)*)?"
    r"(?:\s+NOWAIT|\s+SKIP\s+LOCKED)?\b",
    re.IGNORECASE,
)

# Single-quoted literals ('' escapes a quote): row-lock words inside them are data.
_LITERAL = re.compile(r"'(?:[^']|'')*'")


def _check_percents(sql: str) -> None:
    for match in _PERCENT.finditer(sql):
        if match.group(0) == "%":
            raise ValueError(
                "portable SQL takes named parameters %(name)s and writes a literal % as %%: "
                f"{sql!r}"
            )


def _to_sqlite_params(segment: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        return f":{name}" if name is not None else "%"

    return _PERCENT.sub(replace, segment)


@functools.lru_cache(maxsize=1024)
def translate(sql: str, dialect: Dialect) -> str:
    """Portable SQL -> the backend's SQL. Raises ValueError for a stray `%`."""
    _check_percents(sql)
    if dialect == "postgresql":
        return sql
    out: list[str] = []
    pos = 0
    for literal in _LITERAL.finditer(sql):
        out.append(_ROW_LOCK.sub("", sql[pos : literal.start()]))
        out.append(literal.group(0))
        pos = literal.end()
    out.append(_ROW_LOCK.sub("", sql[pos:]))
    return _to_sqlite_params("".join(out))
