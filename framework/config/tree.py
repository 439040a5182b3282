"""The config tree: plain dicts/lists/scalars, key paths, and where each value came from.

Every path present in a loaded tree (containers and leaves) maps to an :class:`Origin`, so
an error about any key, even a missing one, can name the file (and line) to fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SCALAR_TYPES",
    "KeyPath",
    "Origin",
    "format_key",
    "nearest_origin",
    "prune",
    "resolve_key",
    "walk",
]

#: A path into the tree: mapping keys are ``str``, list indices are ``int``.
KeyPath = tuple[str | int, ...]

#: The types of a tree's leaves: what a YAML or JSON scalar loads as.
SCALAR_TYPES = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value was defined: a file (with a 1-based line when known) or an env var.

    ``variables`` names the environment variables a ``${VAR}`` placeholder at that place took
    its text from: ``configs/config.yaml:13 (env HTTP_PORT)``, so an error about the value
    points at the variable that set it, not only at the line that reads it.
    """

    source: str
    line: int | None = None
    variables: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        if self.variables:
            where += f" (env {', '.join(self.variables)})"
        return where


def format_key(path: tuple[Any, ...]) -> str:
    """``("server", "hosts", 0, "port")`` -> ``server.hosts[0].port``; ``()`` -> ``(root)``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def walk(value: Any, path: KeyPath = ()) -> Iterator[KeyPath]:
    """Every path in ``value``, the root first, parents before children."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, (*path, index))


def prune(data: Any, origins: Mapping[KeyPath, Origin]) -> dict[KeyPath, Origin]:
    """Keep only the origins of paths that still exist in ``data`` (after merges/overrides)."""
    return {path: origins[path] for path in walk(data) if path in origins}


def resolve_key(data: Any, key: str) -> tuple[KeyPath, Any] | None:
    """Follow a dotted user key (``"server.http"``, ``"hosts.0"``); ``None`` if absent.

    A segment addressing a list must be a decimal index; ``""`` is the root.
    """
    path: list[str | int] = []
    node = data
    for segment in key.split(".") if key else ():
        if isinstance(node, dict) and segment in node:
            node = node[segment]
            path.append(segment)
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
            path.append(int(segment))
        else:
            return None
    return tuple(path), node


def nearest_origin(origins: Mapping[KeyPath, Origin], path: tuple[Any, ...]) -> Origin:
    """The origin of ``path``, or of its closest existing ancestor (a missing key's parent).

    The root path is always present in a loaded config's origins, so this always answers.
    """
    for end in range(len(path), -1, -1):
        origin = origins.get(path[:end])
        if origin is not None:
            return origin
    raise KeyError("origins has no root entry")  # pragma: no cover - loader always sets it
