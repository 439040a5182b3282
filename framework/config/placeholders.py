"""``${VAR}`` / ``${VAR:default}`` placeholders in string values, resolved from the environment.

- ``port: ${PORT:8000}``: the value is a string, the variable's text when ``PORT`` is set and
  the default's text (``"8000"``) when it is not; typed scanning turns it into the field's
  type, so the model sees the int 8000 either way. A default is never parsed as YAML, so
  it reads exactly like the same text in the variable: ``${PIN:0123}`` is ``"0123"`` (not
  YAML 1.1's octal 83), ``${FLAG:on}`` is ``"on"``, ``${X:null}`` is ``"null"``, and
  quoting the placeholder in YAML (``"${PORT:8000}"``) changes nothing.
- ``url: http://${HOST:localhost}:${PORT:80}``: inside a longer string, text is substituted.
- ``$${VAR}`` is the literal text ``${VAR}``.
- An unset variable without a default, or a malformed placeholder, is a :class:`ConfigError`
  naming the file, line and key.
- A value that took text from a variable has that variable in its origin
  (``configs/config.yaml:13 (env HTTP_PORT)``), so ``HTTP_PORT=abc`` is reported as
  ``configs/config.yaml:13 (env HTTP_PORT): server.http.port: Input should be a valid
  integer..., got 'abc'``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

from framework.config.errors import ConfigError
from framework.config.tree import KeyPath, Origin, format_key, nearest_origin

__all__ = ["resolve_placeholders", "resolve_string"]

# Order matters: the escape first, then a well-formed placeholder, then any other "${" so
# that a typo (``${PORT-80}``, an unclosed brace) is reported instead of kept verbatim.
_TOKEN = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def resolve_placeholders(
    data: Any,
    origins: MutableMapping[KeyPath, Origin],
    environ: Mapping[str, str],
    path: KeyPath = (),
) -> Any:
    """A copy of ``data`` with every placeholder in every string value resolved; the origin
    of a value that read a variable gets that variable's name (:attr:`Origin.variables`)."""
    if isinstance(data, dict):
        return {k: resolve_placeholders(v, origins, environ, (*path, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [resolve_placeholders(v, origins, environ, (*path, i)) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:
        used: list[str] = []
        try:
            text = _resolve(data, environ, used)
        except ValueError as exc:
            where = nearest_origin(origins, path)
            raise ConfigError(f"{where}: {format_key(path)}: {exc}") from None
        if used:
            origin = nearest_origin(origins, path)
            origins[path] = dataclasses.replace(origin, variables=tuple(dict.fromkeys(used)))
        return text
    return data


def resolve_string(text: str, environ: Mapping[str, str]) -> str:
    """Resolve the placeholders of one string; ``ValueError`` says what is wrong.

    The result is always a string: a default is text, exactly like a variable's value
    (typing it here, as YAML would, made ``${PIN:0123}`` the int 83 only while ``PIN`` was
    unset).
    """
    return _resolve(text, environ, [])


def _resolve(text: str, environ: Mapping[str, str], used: list[str]) -> str:
    """:func:`resolve_string`, appending to ``used`` the variables whose text it took."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        body = match.group("body")
        if body is None:
            raise ValueError(f"unclosed placeholder in {text!r}")
        name, default = _parse(body)
        if name in environ:
            used.append(name)
            return environ[name]
        if default is None:
            raise ValueError(_unset(name))
        return default

    return _TOKEN.sub(substitute, text)


def _parse(body: str) -> tuple[str, str | None]:
    name, colon, default = body.partition(":")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"malformed placeholder ${{{body}}}: expected ${{NAME}} or ${{NAME:default}} "
            "(write $${ for a literal ${)"
        )
    if "${" in default:
        raise ValueError(f"nested placeholders are not supported: ${{{body}}}}}")
    return name, default if colon else None


def _unset(name: str) -> str:
    return f"environment variable {name} is not set and ${{{name}}} has no default"
