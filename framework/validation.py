"""Input constraints declared once, as pydantic types, and checked the same on every transport.

A value can be valid JSON (or protobuf) and still not be storable: PostgreSQL refuses NUL
characters in text, a ``VARCHAR(64)`` refuses a 65-character string, a ``BIGINT`` refuses
``2**63``, and no database driver encodes a lone UTF-16 surrogate. Left unchecked, each of
these reaches the database and comes back as a 500. Declare the column's limits on the field
instead, once, and use the same annotated type in the HTTP body, the gRPC/use-case arguments,
the WebSocket payload and the broker event::

    CustomerId = Annotated[str, StorableText(min_length=1, max_length=64)]   # String(64)
    AmountCents = Annotated[int, Int64Range, Gt(0)]                          # BigInteger

    class NewOrder(BaseModel):
        customer_id: CustomerId
        amount_cents: AmountCents

    class OrderUseCase:
        @validated          # the arguments are checked on every call, whatever the transport
        async def create(self, customer_id: CustomerId, amount_cents: AmountCents) -> Order: ...

A failure is a 400 ``VALIDATOR`` :class:`~framework.errors.Error` (gRPC ``INVALID_ARGUMENT``),
whose message names each bad field and never echoes more than :data:`ECHO_LIMIT` characters of
what the client sent (:func:`excerpt`, :func:`describe_errors`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ParamSpec, TypeVar, cast

from annotated_types import Interval
from pydantic import ConfigDict, GetCoreSchemaHandler, ValidationError, validate_call
from pydantic_core import ErrorDetails, core_schema

from framework.errors import Error

__all__ = [
    "ECHO_LIMIT",
    "INT32_MAX",
    "INT32_MIN",
    "INT64_MAX",
    "INT64_MIN",
    "VALIDATOR",
    "Int32",
    "Int32Range",
    "Int64",
    "Int64Range",
    "StorableText",
    "check_storable_text",
    "describe_errors",
    "excerpt",
    "validated",
    "validation_error",
]

#: Reason of every validation failure (the validate middleware and HTTP bodies use it too).
VALIDATOR = "VALIDATOR"

#: The most characters of one client-supplied value that an error message repeats.
ECHO_LIMIT = 200

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

#: The range of a 32-bit signed column (``Integer``) or protobuf ``int32``.
Int32Range = Interval(ge=INT32_MIN, le=INT32_MAX)
#: The range of a 64-bit signed column (``BigInteger``) or protobuf ``int64``.
Int64Range = Interval(ge=INT64_MIN, le=INT64_MAX)
Int32 = Annotated[int, Int32Range]
Int64 = Annotated[int, Int64Range]

_MAX_ERRORS_SHOWN = 5
_P = ParamSpec("_P")
_R = TypeVar("_R")


def excerpt(value: object, limit: int = ECHO_LIMIT) -> str:
    """``str(value)`` cut to ``limit`` characters with an ellipsis: how client input is echoed."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def check_storable_text(value: str) -> str:
    """Return ``value`` if a database can store it as text, else raise ``ValueError``.

    Refused: NUL (PostgreSQL text cannot hold it) and lone UTF-16 surrogates (no driver can
    encode them as UTF-8; pydantic's ``str`` already refuses those coming from JSON, this
    covers plain Python callers).
    """
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


@dataclass(frozen=True, slots=True)
class StorableText:
    """``Annotated[str, StorableText(max_length=64)]``: text that fits a ``String(64)`` column.

    Lengths are in characters (code points), as PostgreSQL's ``VARCHAR(n)`` counts them; the
    JSON schema shows ``minLength``/``maxLength``. See :func:`check_storable_text` for the
    characters refused. Only for ``str`` fields.
    """

    max_length: int
    min_length: int = 0

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # A schema of its own rather than annotated-types metadata: pydantic drops validators
        # grouped that way from validate_call arguments.
        text = core_schema.str_schema(min_length=self.min_length, max_length=self.max_length)
        return core_schema.no_info_after_validator_function(check_storable_text, text)


def describe_errors(errors: Sequence[ErrorDetails]) -> str:
    """One line naming each failed field: ``"body.customer_id: String should have ..."``.

    The value the client sent is never included, and the field path and message are each cut
    to :data:`ECHO_LIMIT` characters, since both can carry client input (a dict key, a
    validator's message quoting its input).
    """
    parts = []
    for error in errors[:_MAX_ERRORS_SHOWN]:
        loc = tuple(str(p) for p in error.get("loc", ()))
        msg = error.get("msg", "invalid")
        if error.get("type") == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif error.get("type") == "json_invalid" and len(loc) == 2 and loc[1].isdigit():
            # FastAPI puts the parser's character position in the path ("body.1"): say it.
            reason = (error.get("ctx") or {}).get("error")
            msg = f"invalid JSON at character {loc[1]}" + (f" ({reason})" if reason else "")
            loc = loc[:1]
        where = excerpt(".".join(loc)) + ": " if loc else ""
        parts.append(where + excerpt(msg))
    more = len(errors) - _MAX_ERRORS_SHOWN
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "") or "invalid input"


def validation_error(exc: ValidationError) -> Error:
    """The 400 ``VALIDATOR`` :class:`~framework.errors.Error` for a pydantic failure."""
    return Error(400, VALIDATOR, describe_errors(exc.errors(include_url=False)))


def validated(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Check a function's arguments against their annotations on every call.

    pydantic's ``validate_call``, with a failure raised as a 400 ``VALIDATOR``
    :class:`~framework.errors.Error` naming the arguments, so the same declared types guard a
    use case whichever transport called it. Works on coroutine functions and methods (the
    arguments are checked when the coroutine is created, before it runs).

    Raises:
        framework.errors.Error: 400 ``VALIDATOR`` when an argument does not validate.
    """
    config = ConfigDict(arbitrary_types_allowed=True)
    names = tuple(inspect.signature(fn).parameters)

    def refuse(exc: ValidationError) -> Error:
        # validate_call locates a positional argument by its index: name it instead.
        errors = [
            {**e, "loc": (names[e["loc"][0]], *e["loc"][1:])}
            if e["loc"] and isinstance(e["loc"][0], int) and e["loc"][0] < len(names)
            else e
            for e in exc.errors(include_url=False)
        ]
        return Error(400, VALIDATOR, describe_errors(cast("list[ErrorDetails]", errors)))

    if not inspect.iscoroutinefunction(fn):
        checked = validate_call(config=config)(fn)

        @functools.wraps(fn)
        def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return checked(*args, **kwargs)
            except ValidationError as exc:
                raise refuse(exc) from None

        return call

    # validate_call would check a coroutine function's arguments only once the coroutine
    # runs, where a ValidationError raised by the body itself (a server bug, not bad input)
    # could not be told apart. A plain function returning the coroutine is checked at once.
    @functools.wraps(fn)
    def start(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    check_then_start = validate_call(config=config)(start)

    @functools.wraps(fn)
    async def call_async(*args: Any, **kwargs: Any) -> Any:
        try:
            coroutine = check_then_start(*args, **kwargs)
        except ValidationError as exc:
            raise refuse(exc) from None
        return await coroutine

    return cast("Callable[_P, _R]", call_async)
