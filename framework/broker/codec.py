"""Codecs: turn payloads into bytes for publishing and bytes into the handler's annotated type.

A :class:`Codec` has two methods, ``encode(obj) -> bytes`` and ``decode(data, type_)``. The
codecs here also offer ``decoder(type_)``, which resolves the decoding strategy for one type
once and returns a ``bytes -> value`` function: the processor calls it at subscribe time so the
per-message path is a single call (see :func:`decoder_for`).

Every decode or validation failure raises :class:`DecodeError` with a one-line reason; the
processor dead-letters such a message at once (retrying cannot fix its bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast, runtime_checkable

import orjson
import pydantic
import pydantic_core

from framework.broker.message import Message

__all__ = [
    "BytesCodec",
    "Codec",
    "DecodeError",
    "Decoder",
    "JsonCodec",
    "ProtobufCodec",
    "StrCodec",
    "decoder_for",
]

Decoder = Callable[[bytes], Any]

_UNTYPED: tuple[Any, ...] = (Any, object, None)
_MAX_INPUT_SHOWN = 60


class DecodeError(ValueError):
    """The bytes of a message cannot be turned into the handler's type.

    ``reason`` is a one-line, human-readable explanation (it ends up in the DLQ headers).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class Codec(Protocol):
    """Encodes payloads to bytes and decodes bytes into a requested type."""

    def encode(self, obj: Any) -> bytes:
        """Serialize ``obj``; raise ``TypeError`` for objects this codec cannot encode."""
        ...

    def decode(self, data: bytes, type_: Any) -> Any:
        """Deserialize ``data`` into ``type_``; raise :class:`DecodeError` on bad input."""
        ...


def decoder_for(codec: Codec, type_: Any) -> Decoder:
    """A ``bytes -> value`` function for ``type_``, resolved once.

    Uses ``codec.decoder(type_)`` when the codec has it (every codec of this module does),
    else falls back to calling ``codec.decode(data, type_)`` per message. Raises ``TypeError``
    at once when the codec cannot decode into ``type_`` at all.
    """
    resolve = getattr(codec, "decoder", None)
    if callable(resolve):
        decoder: Decoder = resolve(type_)
        return decoder
    decode = codec.decode
    return lambda data: decode(data, type_)


def _type_name(type_: Any) -> str:
    return getattr(type_, "__name__", None) or repr(type_)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_INPUT_SHOWN else text[: _MAX_INPUT_SHOWN - 3] + "..."


def _validation_reason(exc: pydantic.ValidationError, type_: Any) -> str:
    # One line, a few errors: the reason travels in a message header.
    errors = exc.errors(include_url=False)
    parts = []
    for error in errors[:3]:
        loc = ".".join(str(p) for p in error["loc"])
        where = f"{loc}: " if loc else ""
        shown = "" if error["type"] == "json_invalid" else f" (got {_shown(error['input'])})"
        parts.append(f"{where}{error['msg']}{shown}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return f"invalid {_type_name(type_)}: " + "; ".join(parts) + more


def _is_model(type_: Any) -> bool:
    return isinstance(type_, type) and issubclass(type_, pydantic.BaseModel)


def _msgspec_struct(type_: Any) -> Any:
    """The msgspec module when ``type_`` is a ``msgspec.Struct`` subclass, else ``None``."""
    if not isinstance(type_, type):
        return None
    try:
        import msgspec
    except ImportError:  # the msgspec extra is optional
        return None
    return msgspec if issubclass(type_, msgspec.Struct) else None


def _bytes_decoder(data: bytes) -> bytes:
    return data


def _str_decoder(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not UTF-8 text: {exc}") from exc


class _CachingCodec:
    """Shared ``decode``/``decoder`` plumbing: one resolved decoder per requested type."""

    def __init__(self) -> None:
        self._decoders: dict[Any, Decoder] = {}

    def decoder(self, type_: Any) -> Decoder:
        """The cached ``bytes -> value`` function for ``type_`` (``TypeError`` if unsupported)."""
        try:
            return self._decoders[type_]
        except KeyError:
            pass
        except TypeError:  # unhashable annotation: resolve without caching
            return self._resolve(type_)
        decoder = self._decoders[type_] = self._resolve(type_)
        return decoder

    def decode(self, data: bytes, type_: Any) -> Any:
        """Decode ``data`` into ``type_``; raise :class:`DecodeError` on bad input."""
        return self.decoder(type_)(data)

    def _resolve(self, type_: Any) -> Decoder:
        if type_ is Message:
            # The processor hands the raw Message through itself; a codec only sees bytes.
            raise TypeError("Message is passed through by the processor, not decoded by a codec")
        return self._build(type_)

    def _build(self, type_: Any) -> Decoder:  # pragma: no cover - abstract
        raise NotImplementedError


def _json_default(obj: Any) -> Any:
    # orjson handles dicts, lists, dataclasses, datetimes, UUIDs and enums natively; this
    # covers what it does not: models nested in containers, msgspec structs, sets, decimals.
    if isinstance(obj, pydantic.BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, set | frozenset):
        return list(obj)
    struct = _msgspec_struct(type(obj))
    if struct is not None:
        return struct.to_builtins(obj)
    return pydantic_core.to_jsonable_python(obj)


class JsonCodec(_CachingCodec):
    """JSON via orjson, pydantic and msgspec, each used where it is fastest.

    Encoding: ``bytes`` pass through, ``str`` is sent as UTF-8 text, pydantic models use their
    compiled serializer, msgspec structs ``msgspec.json``, anything else orjson.

    Decoding into the annotated type: pydantic models with ``model_validate_json`` straight
    from the bytes, msgspec structs with a ``msgspec.json.Decoder``, bare ``dict``/``list``
    and untyped (``Any``) with orjson, ``bytes``/``str`` as they are, and any other type
    (dataclass, TypedDict, ``list[int]``, ``Model | None``, ...) with a cached pydantic
    ``TypeAdapter``.
    """

    def encode(self, obj: Any) -> bytes:
        """Serialize ``obj`` to JSON bytes (``bytes``/``str`` are sent unchanged)."""
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, str):
            return obj.encode("utf-8")
        if isinstance(obj, pydantic.BaseModel):
            return pydantic_core.to_json(obj)
        if isinstance(obj, bytearray | memoryview):
            return bytes(obj)
        struct = _msgspec_struct(type(obj))
        if struct is not None:
            encoded: bytes = struct.json.encode(obj)
            return encoded
        try:
            return orjson.dumps(obj, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
        except (TypeError, pydantic_core.PydanticSerializationError) as exc:
            raise TypeError(f"JsonCodec cannot encode {type(obj).__name__}: {exc}") from exc

    def _build(self, type_: Any) -> Decoder:
        if type_ in _UNTYPED:
            return _orjson_decoder(None)
        if type_ is bytes:
            return _bytes_decoder
        if type_ is str:
            return _str_decoder
        if type_ is dict or type_ is list:
            return _orjson_decoder(type_)
        if _is_model(type_):
            return _pydantic_decoder(type_.model_validate_json, type_)
        struct = _msgspec_struct(type_)
        if struct is not None:
            return _struct_decoder(struct, type_)
        try:
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(type_)
        except pydantic.PydanticUserError as exc:  # incl. PydanticSchemaGenerationError
            raise TypeError(f"JsonCodec cannot decode into {type_!r}: {exc}") from exc
        return _pydantic_decoder(adapter.validate_json, type_)


def _orjson_decoder(expected: type | None) -> Decoder:
    loads = orjson.loads

    def decode(data: bytes) -> Any:
        try:
            value = loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"invalid JSON: {exc}") from exc
        if expected is not None and not isinstance(value, expected):
            raise DecodeError(f"expected a JSON {expected.__name__}, got {type(value).__name__}")
        return value

    return decode


def _struct_decoder(msgspec: Any, struct: type) -> Decoder:
    decode_json = msgspec.json.Decoder(struct).decode
    errors = msgspec.MsgspecError

    def decode(data: bytes) -> Any:
        try:
            return decode_json(data)
        except errors as exc:
            raise DecodeError(f"invalid {struct.__name__}: {exc}") from exc

    return decode


def _pydantic_decoder(validate: Decoder, type_: Any) -> Decoder:
    """``validate`` (a model's ``model_validate_json``, a ``TypeAdapter``'s ``validate_json``)
    raising :class:`DecodeError` instead of ``ValidationError``."""

    def decode(data: bytes) -> Any:
        try:
            return validate(data)
        except pydantic.ValidationError as exc:
            raise DecodeError(_validation_reason(exc, type_)) from exc

    return decode


class _TextOrBytesCodec(_CachingCodec):
    """Payloads that are ``bytes`` or ``str`` (sent as UTF-8) both ways.

    ``_untyped`` is what an unannotated (``Any``) payload decodes into; ``_kinds`` names the
    accepted types, in that order, in error messages.
    """

    _untyped: type
    _kinds: str

    def encode(self, obj: Any) -> bytes:
        """``bytes`` as they are, ``str`` as UTF-8; anything else is an error."""
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, str):
            return obj.encode("utf-8")
        raise TypeError(f"{type(self).__name__} encodes {self._kinds}, not {type(obj).__name__}")

    def _build(self, type_: Any) -> Decoder:
        if type_ in _UNTYPED:
            type_ = self._untyped
        if type_ is bytes:
            return _bytes_decoder
        if type_ is str:
            return _str_decoder
        raise TypeError(f"{type(self).__name__} decodes into {self._kinds}, not {type_!r}")


class BytesCodec(_TextOrBytesCodec):
    """Raw bytes: payloads are ``bytes`` (or ``str``, sent as UTF-8) both ways."""

    _untyped = bytes
    _kinds = "bytes or str"

    def encode(self, obj: Any) -> bytes:
        """``bytes``-like objects as they are, ``str`` as UTF-8; anything else is an error."""
        if isinstance(obj, bytearray | memoryview):
            return bytes(obj)
        return super().encode(obj)


class StrCodec(_TextOrBytesCodec):
    """UTF-8 text: payloads are ``str`` (``bytes`` pass through unchanged)."""

    _untyped = str
    _kinds = "str or bytes"


class ProtobufCodec(_CachingCodec):
    """Protocol Buffers: publish generated messages, decode into the annotated message class.

    Needs ``protobuf`` (``pip install pykratos[grpc]``).
    """

    def __init__(self) -> None:
        super().__init__()
        try:
            from google.protobuf import message as pb_message
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError("ProtobufCodec needs protobuf: pip install pykratos[grpc]") from exc
        self._message_type: type = pb_message.Message
        self._decode_error: type[Exception] = pb_message.DecodeError

    def encode(self, obj: Any) -> bytes:
        """``SerializeToString()`` of a protobuf message; ``bytes`` pass through."""
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, self._message_type):
            data: bytes = cast(Any, obj).SerializeToString()
            return data
        raise TypeError(f"ProtobufCodec encodes protobuf messages, not {type(obj).__name__}")

    def _build(self, type_: Any) -> Decoder:
        if type_ in _UNTYPED or type_ is bytes:
            return _bytes_decoder
        if not (isinstance(type_, type) and issubclass(type_, self._message_type)):
            raise TypeError(f"ProtobufCodec decodes into protobuf message classes, not {type_!r}")
        parse = cast(Any, type_).FromString
        errors = self._decode_error

        def decode(data: bytes) -> Any:
            try:
                return parse(data)
            except errors as exc:
                raise DecodeError(f"invalid {type_.__name__}: {exc}") from exc

        return decode
