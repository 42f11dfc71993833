"""TOML files an administrator writes (configuration, inventory, event rules), with errors
that name the file and the line.

tomllib reports a position only for syntax errors; once a file has parsed there is no line
left for "this value is wrong". `locate()` finds the table header or the key in the text, so
every `TomlReader.fail()` says `file:line: what is wrong and what is expected`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from provider.errors import ConfigError

__all__ = ["TomlReader", "load_toml", "locate", "parse_toml"]

_HEADER = re.compile(r"^\s*\[\[?(?P<path>[^\]]+)\]\]?\s*(?:#.*)?$")
_KEY_PART = re.compile(
    r'\s*(?:"(?P<dq>(?:[^"\\]|\\.)*)"|\'(?P<sq>[^\']*)\'|(?P<bare>[A-Za-z0-9_-]+))\s*'
)


def _split_dotted(text: str) -> tuple[str, ...] | None:
    parts: list[str] = []
    pos = 0
    while pos <= len(text):
        match = _KEY_PART.match(text, pos)
        if match is None:
            return None
        parts.append(match.group("dq") or match.group("sq") or match.group("bare") or "")
        pos = match.end()
        if pos == len(text):
            return tuple(parts)
        if text[pos] != ".":
            return None
        pos += 1
    return tuple(parts)


def _key_pattern(key: str) -> re.Pattern[str]:
    return re.compile(r"^\s*(?:" + re.escape(key) + r'|"' + re.escape(key) + r'")\s*[=.]')


def _top_level_line(lines: Sequence[str], key: str | None) -> int:
    if key is None:
        return 1
    pattern = _key_pattern(key)
    for number, line in enumerate(lines, start=1):
        if _HEADER.match(line):
            break
        if pattern.match(line):
            return number
    return 1


def locate(text: str, where: Sequence[str], key: str | None = None) -> int:
    """The 1-based line of table `where` (or of `key` inside it) in TOML `text`.

    `where=[]` means the top level. Falls back to the longest enclosing table that has a
    header, then to line 1, so an error always names a line, even for dotted keys or inline
    tables."""
    lines = text.splitlines()
    if not where:
        return _top_level_line(lines, key)
    headers: list[tuple[int, tuple[str, ...]]] = []
    for number, line in enumerate(lines):
        match = _HEADER.match(line)
        if match is not None:
            dotted = _split_dotted(match.group("path").strip())
            if dotted is not None:
                headers.append((number, dotted))
    wanted = tuple(where)
    for length in range(len(wanted), 0, -1):
        found = [n for n, p in headers if p == wanted[:length]]
        if not found:
            continue
        start = found[0]
        names = [*wanted[length:], key] if key is not None else list(wanted[length:])
        if not names:
            return start + 1
        pattern = _key_pattern(names[0])
        for i in range(start + 1, len(lines)):
            if _HEADER.match(lines[i]):
                break
            if pattern.match(lines[i]):
                return i + 1
        return start + 1
    return 1


def parse_toml(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message carries line and column
        raise ConfigError(f"{path}: {exc}") from exc


def load_toml(path: Path, what: str) -> tuple[str, dict[str, Any]]:
    """The text and the parsed tables of `path`; `what` names the file in a read error
    (e.g. "the inventory")."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}.") from exc
    return text, parse_toml(text, path)


def _kind_name(kind: type) -> str:
    names = {
        str: "string",
        bool: "boolean (true/false)",
        int: "whole number",
        float: "number",
        list: "list",
        dict: "table",
    }
    return names.get(kind, kind.__name__)


class TomlReader:
    """Typed access to parsed tables; every refusal names the file and line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, where: Sequence[str], key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{self.path}:{locate(self.text, where, key)}: {message}")

    def table(
        self, where: Sequence[str], value: Any, known: set[str] | None = None
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, None, f"[{'.'.join(where)}] must be a table.")
        if known is not None:
            for key in value:
                if key not in known:
                    raise self.fail(
                        where,
                        key,
                        f"unknown key {key!r} in [{'.'.join(where)}]; "
                        f"known keys: {', '.join(sorted(known))}.",
                    )
        return value

    def get(
        self, where: Sequence[str], table: Mapping[str, Any], key: str, kind: type, default: Any
    ) -> Any:
        if key not in table:
            return default
        value = table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            dotted = ".".join([*where, key])
            raise self.fail(where, key, f"{dotted} must be a {_kind_name(kind)}, not {value!r}.")
        return value

    def strings(self, where: Sequence[str], table: Mapping[str, Any], key: str) -> tuple[str, ...]:
        value = self.get(where, table, key, list, [])
        if not all(isinstance(v, str) for v in value):
            raise self.fail(where, key, f"{'.'.join([*where, key])} must be a list of strings.")
        return tuple(value)
