"""The constructor options of each broker kind, as data: for config validation and docs.

A broker kind's options are the keyword parameters of its options dataclass (Kafka's
``KafkaOptions``) or of its broker class (see :func:`~framework.broker.factory.
options_target`), with their type hints, defaults and the descriptions of the class
docstring's ``Args:``/``Attributes:`` section. Nothing is declared twice: a new constructor
parameter or dataclass field is a new option everywhere, in validation and in the README
table.

- :func:`validate_broker_options` checks a config's ``options`` mapping against the kind
  before anything starts: names (listing the valid ones, guessing a misspelt one), types
  (coercing ``"5"`` to ``5`` as for every config value), then the broker's own checks.
- :func:`options_markdown` renders the README's table of every kind's options.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import InitErrorDetails, PydanticCustomError

from framework.broker.factory import BROKER_KINDS, normalize_kind, options_target
from framework.config.keys import (
    did_you_mean,
    reraisable,
    unknown_key_error,
    unknown_key_message,
)

__all__ = [
    "REQUIRED",
    "BrokerOption",
    "broker_options",
    "options_markdown",
    "unknown_options_message",
    "validate_broker_options",
]

#: The ``default`` of an option that has none (the constructor requires it).
REQUIRED: Any = inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class BrokerOption:
    """One option of a broker kind.

    Attributes:
        name: the keyword (and config key) name.
        annotation: its resolved type hint (``Any`` when the parameter has none).
        default: its default, or :data:`REQUIRED`.
        doc: its description from the class docstring, ``""`` when it has none.
    """

    name: str
    annotation: Any
    default: Any
    doc: str


@functools.cache
def broker_options(kind: str) -> tuple[BrokerOption, ...]:
    """The options of ``kind``, in declaration order.

    Raises:
        ValueError: an unknown kind.
        ImportError: the kind's client library is missing (the message names the extra).
    """
    target = options_target(kind)
    # A dataclass's annotations live on the class; a plain class's on its __init__.
    hints = get_type_hints(target if dataclasses.is_dataclass(target) else target.__init__)
    docs = _docstring_entries(inspect.getdoc(target) or "")
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(
        BrokerOption(name, hints.get(name, Any), param.default, docs.get(name, ""))
        for name, param in inspect.signature(target).parameters.items()
        if param.kind in keyword_kinds
    )


def validate_broker_options(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``options`` for a ``kind`` broker and return them typed (``{"partitions": 2}``
    for ``{"partitions": "2"}``); only the given keys, so defaults stay the broker's.

    Meant for a pydantic field validator on a config's ``options`` field: the
    :class:`~pydantic.ValidationError` it raises is located at each offending key, so a
    config scan names the file and line, or the env var, of that very option.

    The broker's own checks (ranges, combinations) run by calling its options target with
    the typed values: constructing a broker or its options does no I/O (that starts in
    ``connect``).

    Raises:
        ValidationError: unknown options (``unknown option 'nope'; valid: ...``, with a
            guess for a near miss) and values of the wrong type, one line each.
        ValueError: an unknown kind, a missing client library, or values the broker
            refuses (``heartbeat_interval_ms must be lower than session_timeout_ms``).
    """
    try:
        schema = broker_options(kind)
    except ImportError as exc:  # a config error, not a crash: the message says what to install
        raise ValueError(str(exc)) from None
    valid = [option.name for option in schema]
    errors = [
        unknown_key_error(name, value, _unknown_message(kind, name, valid))
        for name, value in options.items()
        if name not in valid
    ]
    known = {name: value for name, value in options.items() if name in valid}
    typed: dict[str, Any] = {}
    try:
        model = _options_model(normalize_kind(kind)).model_validate(known)
        typed = {name: getattr(model, name) for name in known}
    except ValidationError as exc:
        errors.extend(reraisable(error) for error in exc.errors(include_url=False))
    if errors:
        raise ValidationError.from_exception_data(f"{kind} broker options", errors)
    try:
        options_target(kind)(**typed)
    except (TypeError, ValueError) as exc:
        raise _located(str(exc), typed) from None
    return typed


def unknown_options_message(kind: str, options: Iterable[str]) -> str | None:
    """The message for the first of ``options`` that ``kind`` does not have, or ``None``."""
    try:
        valid = [option.name for option in broker_options(kind)]
    except (ImportError, ValueError):
        return None
    for name in options:
        if name not in valid:
            return _unknown_message(kind, name, valid)
    return None


def options_markdown(env_prefix: str = "APP_DATA__BROKER__OPTIONS__") -> str:
    """A Markdown table per broker kind: option, type, default, env var and description.

    ``env_prefix`` + the upper-cased name is the variable that overrides the option
    (the reference service's ``APP_`` prefix and ``data.broker.options`` by default).
    """
    blocks = []
    for kind in BROKER_KINDS:
        rows = [
            "| option | type | default | env | description |",
            "|---|---|---|---|---|",
        ]
        for option in broker_options(kind):
            cells = (
                f"`{option.name}`",
                _type_name(option.annotation),
                _default_text(option.default),
                f"`{env_prefix}{option.name.upper()}`",
                _first_sentence(option.doc),
            )
            rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        blocks.append(f"`kind: {kind}`\n\n" + "\n".join(rows))
    return "\n\n".join(blocks) + "\n"


# -- internals -----------------------------------------------------------------------------


@functools.cache
def _options_model(kind: str) -> type[BaseModel]:
    fields: dict[str, Any] = {
        option.name: (option.annotation, ... if option.default is REQUIRED else option.default)
        for option in broker_options(kind)
    }
    return create_model(
        f"{kind.capitalize()}BrokerOptions",
        # An env var's "123" is read as a number: a str option (client_id) still takes it.
        # Floats must be finite: a NaN passes every range check the brokers make (a NaN
        # publish_timeout or ack_wait), and an infinite one overflows the timers.
        __config__=ConfigDict(
            extra="forbid",
            coerce_numbers_to_str=True,
            arbitrary_types_allowed=True,
            allow_inf_nan=False,
        ),
        **fields,
    )


def _unknown_message(kind: str, name: str, valid: list[str]) -> str:
    message = unknown_key_message(name, valid, what="option")
    if did_you_mean(name, valid) is not None:
        return message
    # The common slip: a Kafka or RabbitMQ option while ``kind`` is still the default memory,
    # possibly misspelt as well.
    for other in BROKER_KINDS:
        if other == kind:
            continue
        guess = did_you_mean(name, _option_names(other))
        if guess == name:
            return f"{message}; {name!r} is an option of the {other} broker, not {kind}"
        if guess is not None:
            return f"{message}; did you mean {guess!r}, an option of the {other} broker?"
    return message


def _option_names(kind: str) -> list[str]:
    try:
        return [option.name for option in broker_options(kind)]
    except ImportError:  # that kind's client library is not installed: say nothing about it
        return []


def _located(message: str, typed: Mapping[str, Any]) -> ValidationError | ValueError:
    """The broker's own refusal, located at the option it names when it names exactly one of
    the given ones (``partitions must be >= 1``), else at the options mapping."""
    named = [name for name in typed if re.search(rf"\b{re.escape(name)}\b", message)]
    if len(named) != 1:
        return ValueError(message)
    error = InitErrorDetails(
        type=PydanticCustomError("value_error", message), loc=(named[0],), input=typed[named[0]]
    )
    return ValidationError.from_exception_data("broker options", [error])


_SECTION = re.compile(r"^(Args|Arguments|Attributes|Parameters):\s*$")
_ENTRY = re.compile(r"^(\w+)(?: \([^)]*\))?:\s*(.*)$")


def _docstring_entries(doc: str) -> dict[str, str]:
    """``name -> description`` of a Google-style ``Args:``/``Attributes:`` section."""
    entries: dict[str, str] = {}
    current: str | None = None
    inside = False
    indent = 0
    for line in doc.splitlines():
        stripped = line.strip()
        if _SECTION.match(stripped) and not line.startswith(" "):
            inside, current = True, None
            continue
        if not inside:
            continue
        if stripped and not line.startswith(" "):  # the section ended
            inside, current = False, None
            continue
        if not stripped:
            current = None
            continue
        depth = len(line) - len(line.lstrip())
        match = _ENTRY.match(stripped)
        if match and (current is None or depth <= indent):
            current, indent = match.group(1), depth
            entries[current] = match.group(2)
        elif current is not None:
            entries[current] += " " + stripped
    return entries


def _first_sentence(text: str) -> str:
    """The docstring entry's first sentence, one line, with Markdown code spans."""
    text = re.sub(r"``(.+?)``", r"`\1`", " ".join(text.split()))
    text = re.sub(r":\w+:`~?(?:[\w]+\.)*(\w+)`", r"`\1`", text)  # :class:`~a.B` -> `B`
    for match in re.finditer(r"\.(?=\s)", text):
        before = text[: match.start()]
        # Not the end of a sentence: an ellipsis ("... or") or an abbreviation ("e.g. x").
        if before.endswith(".") or before.endswith(("e.g", "i.e", "etc")) or not before:
            continue
        return text[: match.end()]
    return text


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " | ".join(json.dumps(arg) for arg in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in get_args(annotation))
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(default: Any) -> str:
    if default is REQUIRED:
        return "required"
    try:
        return f"`{json.dumps(default)}`"
    except TypeError:
        return f"`{default!r}`"
