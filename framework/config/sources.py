"""Reading config sources: one file, or every ``*.yaml``/``*.yml``/``*.json`` in a directory.

Each file becomes a :class:`Document` whose every path carries an :class:`Origin` (YAML: the
line of the key's value), so later errors can point at the exact place to fix.

A key written twice in one mapping is refused (YAML and JSON parsers keep the last one
silently, so the first would be dead text that looks live): the error names the file, the key
path and both lines. Keys that only differ in YAML type (``1:`` and ``"1":``) are the same key
here, as every key is read as a string. Overriding a key pulled in by a merge key (``<<:``) is
what merge keys are for, and is not a duplicate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from framework.config.errors import ConfigError
from framework.config.tree import KeyPath, Origin, format_key, walk

__all__ = ["SUFFIXES", "Document", "discover", "read_document", "read_sources"]

#: File suffixes a directory source picks up (case-insensitive).
SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class Document:
    """One parsed config file: its top-level mapping and the origin of every path."""

    name: str
    data: dict[str, Any]
    origins: dict[KeyPath, Origin]


def discover(source: Path) -> list[Path]:
    """The files of a source, in merge order (a directory's files sorted by name)."""
    if not source.exists():
        raise ConfigError(f"config path {source} does not exist")
    if not source.is_dir():
        return [source]
    # Hidden files are editor droppings (.#x.yaml, .x.yaml.swp) or Kubernetes' ..data links.
    files = sorted(
        (
            p
            for p in source.iterdir()
            if p.suffix.lower() in SUFFIXES and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: p.name,
    )
    if not files:
        raise ConfigError(f"config directory {source} has no {'/'.join(SUFFIXES)} files")
    return files


def read_sources(source: Path) -> list[Document]:
    """Read and parse every file of ``source`` (see :func:`discover`)."""
    return [read_document(path) for path in discover(source)]


def read_document(path: Path) -> Document:
    """Parse one file: ``.json`` as JSON, anything else as YAML."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot read: {exc}") from exc
    if path.suffix.lower() == ".json":
        data, origins = _parse_json(text, name)
    else:
        data, origins = _parse_yaml(text, name)
    if data is None:  # an empty (or comments-only) file contributes nothing
        return Document(name, {}, {(): Origin(name)})
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: top level must be a mapping, got {type(data).__name__}")
    return Document(name, data, origins)


def _parse_json(text: str, name: str) -> tuple[Any, dict[KeyPath, Origin]]:
    try:
        data = json.loads(text, object_pairs_hook=_unique_pairs) if text.strip() else None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    except _DuplicateKey as exc:
        # The YAML reading of the file raises with the key path and both lines; this is the
        # message for a file the YAML reader cannot read.
        _json_lines(text, name)
        raise ConfigError(f"{name}: duplicate key {exc.key!r} (JSON keeps the last one "
                          "silently; remove one)") from None
    origins = {path: Origin(name) for path in walk(data)}
    origins.update(_json_lines(text, name))
    return data, origins


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _refuse_duplicates(loader: yaml.SafeLoader, root: Node, name: str) -> None:
    """Raise :class:`ConfigError` at the first mapping key written twice (see the module
    docstring): ``<file>: <key path>: duplicate key, at line A and again at line B``."""
    seen: set[int] = set()  # anchors make a graph; each node is checked once
    stack: list[tuple[Node, KeyPath]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            lines: dict[str, int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE_TAG:
                    continue
                key = str(loader.construct_object(key_node)) if isinstance(
                    key_node, ScalarNode) else f"<{key_node.id} key>"
                line = key_node.start_mark.line + 1
                if key in lines:
                    raise ConfigError(
                        f"{name}:{line}: {format_key((*path, key))}: duplicate key, already at "
                        f"line {lines[key]} (the parser would keep the last one silently; "
                        "remove one)"
                    )
                lines[key] = line
                stack.append((value_node, (*path, key)))
        elif isinstance(node, SequenceNode):
            stack.extend((item, (*path, index)) for index, item in enumerate(node.value))


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _json_lines(text: str, name: str) -> dict[KeyPath, Origin]:
    """Lines of JSON keys, read by the YAML composer (JSON is, nearly always, YAML too).

    Best effort: the data itself comes from the JSON parser; if the YAML reader disagrees
    with this file, its errors simply carry no line numbers.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        origins: dict[KeyPath, Origin] = {}
        if node is not None:
            _refuse_duplicates(loader, node, name)
            _node_origins(loader, node, (), name, origins)
        return origins
    except yaml.YAMLError:
        return {}
    finally:
        loader.dispose()


def _parse_yaml(text: str, name: str) -> tuple[Any, dict[KeyPath, Origin]]:
    # Compose the node tree ourselves (what yaml.safe_load does inside) so that the marks of
    # each node give the line of every key's value.
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        # Before construct_document, which folds merge keys (<<) into the mappings.
        _refuse_duplicates(loader, node, name)
        data = _string_keys(loader.construct_document(node))
        origins: dict[KeyPath, Origin] = {}
        _node_origins(loader, node, (), name, origins)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_describe_yaml_error(name, exc)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return data, origins


def _describe_yaml_error(name: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
    what = exc.problem or "syntax error"
    if exc.context:
        ctx = exc.context_mark
        what += f" ({exc.context}" + (f" at line {ctx.line + 1})" if ctx else ")")
    return f"{where}: invalid YAML: {what}"


def _node_origins(
    loader: yaml.SafeLoader,
    node: Node,
    path: KeyPath,
    name: str,
    out: dict[KeyPath, Origin],
    line: int | None = None,
) -> None:
    # A mapping entry is located at its key: that is the line a reader looks for, and for a
    # nested block mapping the value node only starts on the next line.
    out[path] = Origin(name, line if line is not None else node.start_mark.line + 1)
    if isinstance(node, MappingNode):
        # construct_document already flattened merge keys (<<) into node.value in place.
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode):
                key = str(loader.construct_object(key_node))
                key_line = key_node.start_mark.line + 1
                _node_origins(loader, value_node, (*path, key), name, out, key_line)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _node_origins(loader, item, (*path, index), name, out)


def _string_keys(value: Any) -> Any:
    """Mapping keys as ``str`` (YAML allows ``1:`` or ``true:``), so dotted keys, env
    overrides and merges across YAML and JSON files all agree on one key type."""
    if isinstance(value, dict):
        return {str(k): _string_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_string_keys(v) for v in value]
    return value
