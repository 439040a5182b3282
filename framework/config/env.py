"""Environment overrides: ``APP_SERVER__HTTP__PORT=9000`` sets ``server.http.port``.

With prefix ``APP_``, every variable ``APP_<KEY>`` overrides a key: ``__`` separates nesting
levels, key segments match existing keys case-insensitively (a new key is lower-cased), and
a decimal segment indexes an existing list. Parents are applied before children, so
``APP_DB`` and ``APP_DB__HOST`` compose predictably. Two variables naming the same key
(``APP_LOG__LEVEL`` and ``APP_log__level``) are refused, naming both: which one would win is
an accident of spelling.

Values are read as plain YAML scalars (``9000`` -> int, ``1.5`` -> float, ``true`` -> bool,
``null``/``~`` -> None), with two exceptions that keep the raw string, because an env var
cannot be quoted the way a YAML value can: a key whose current value is a string (a password
``12345`` must not become an int), and YAML 1.1 surprises (``0123`` is octal 83 to YAML,
``1:30`` is 90, ``on`` is true): only the plain decimal, true/false and null spellings are
converted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from framework.config.errors import ConfigError
from framework.config.tree import KeyPath, Origin, format_key, nearest_origin

__all__ = ["apply_env_overrides", "normalize_prefix", "parse_env_value"]

_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")
_WORDS: dict[str, Any] = {"true": True, "false": False, "null": None, "~": None}


def normalize_prefix(prefix: str) -> str:
    """``"APP"`` and ``"APP_"`` both mean variables named ``APP_...``."""
    return prefix if not prefix or prefix.endswith("_") else prefix + "_"


def parse_env_value(raw: str) -> Any:
    """An int, float, bool or None for the plain spellings of those; else ``raw`` itself."""
    if _INT.fullmatch(raw):
        return int(raw)
    if raw.lower() in _WORDS:
        return _WORDS[raw.lower()]
    if _FLOAT.fullmatch(raw):
        return float(raw)
    return raw


def apply_env_overrides(
    data: dict[str, Any],
    origins: dict[KeyPath, Origin],
    prefix: str,
    environ: Mapping[str, str],
) -> None:
    """Apply every ``prefix``-ed variable of ``environ`` to ``data`` in place.

    An empty prefix applies nothing: without one, every variable of the process would be
    read as a config key.
    """
    prefix = normalize_prefix(prefix)
    if not prefix:
        return
    names = [n for n in environ if n.startswith(prefix)]
    set_by: dict[KeyPath, str] = {}
    for name in sorted(names, key=lambda n: (n.count("__"), n)):
        segments = name[len(prefix) :].split("__")
        if not all(segments):
            raise ConfigError(
                f"env {name}: empty key segment; expected {prefix}KEY or {prefix}KEY__SUBKEY"
            )
        path = _set(data, origins, name, segments, environ[name])
        other = set_by.setdefault(path, name)
        if other != name:
            raise ConfigError(
                f"env {other} and env {name} both set {format_key(path)}; unset one"
            )


def _set(
    data: dict[str, Any],
    origins: dict[KeyPath, Origin],
    name: str,
    segments: list[str],
    raw: str,
) -> KeyPath:
    """Set the key ``segments`` name; returns its path."""
    origin = Origin(f"env {name}")
    node: Any = data
    path: KeyPath = ()
    for depth, segment in enumerate(segments):
        last = depth == len(segments) - 1
        step: str | int
        if isinstance(node, dict):
            step = _match_key(node, segment)
            current = node.get(step)
            if not last and current is None:
                # A missing (or empty ``key:``) parent becomes a mapping owned by the env var.
                node[step] = current = {}
                origins[(*path, step)] = origin
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            step = int(segment)
            current = node[step]
        else:
            where = nearest_origin(origins, path)
            what = (
                f"a list of {len(node)} items"
                if isinstance(node, list)
                else f"a scalar of type {type(node).__name__}"
            )
            raise ConfigError(
                f"env {name}: cannot set {format_key((*path, segment.lower()))}: "
                f"{format_key(path)} is {what} (from {where})"
            )
        path = (*path, step)
        if last:
            node[step] = raw if isinstance(current, str) else parse_env_value(raw)
            origins[path] = origin
        else:
            node = current
    return path


def _match_key(mapping: dict[str, Any], segment: str) -> str:
    """The existing key ``segment`` names, ignoring case (exact match first)."""
    if segment in mapping:
        return segment
    lowered = segment.lower()
    if lowered in mapping:
        return lowered
    for key in mapping:
        if key.lower() == lowered:
            return key
    return lowered
