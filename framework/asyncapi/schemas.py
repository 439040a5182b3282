"""Message payload schemas for the AsyncAPI document, from the types handlers declare.

* pydantic models and any type pydantic understands (``str``, ``list[int]``, TypedDicts,
  dataclasses): ``pydantic.TypeAdapter(...).json_schema()``, validation mode (what a consumer
  accepts);
* msgspec structs: ``msgspec.json.schema_components``;
* protobuf messages: built from the descriptor, following the proto3 JSON mapping (64-bit
  integers as strings, bytes as base64, enums by name), since that is the form a schema can
  describe; the message's ``contentType`` says it travels as binary protobuf.

Named types land in ``components.schemas`` (one entry per type, referenced with ``$ref``), so
a model used by several messages is described once. AsyncAPI component keys must match
``^[\\w\\d.\\-_]+$``: other characters (a generic's brackets) become ``_``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SchemaRegistry", "component_key"]

_KEY = re.compile(r"[^\w.\-]")
_REF = "#/components/schemas/"


def component_key(name: str) -> str:
    """``name`` made a valid AsyncAPI component key."""
    return _KEY.sub("_", name) or "_"


def _is_protobuf(tp: Any) -> bool:
    descriptor = getattr(tp, "DESCRIPTOR", None)
    return isinstance(tp, type) and descriptor is not None and hasattr(descriptor, "fields")


def _is_msgspec(tp: Any) -> bool:
    try:
        import msgspec
    except ImportError:
        return False
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


class SchemaRegistry:
    """Collects the named schemas (``components.schemas``) while payloads are described."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def schema_of(self, tp: Any) -> dict[str, Any]:
        """A JSON Schema for a payload of type ``tp`` (a ``$ref`` for named types)."""
        from framework.broker.message import Message

        if tp is Message:
            return {"description": "the raw message (any body)"}
        if tp is bytes:
            return {"type": "string", "format": "binary"}
        if _is_protobuf(tp):
            return self._protobuf(tp.DESCRIPTOR)
        if _is_msgspec(tp):
            return self._msgspec(tp)
        return self._pydantic(tp)

    def _pydantic(self, tp: Any) -> dict[str, Any]:
        from pydantic import TypeAdapter

        try:
            schema = TypeAdapter(tp).json_schema(ref_template=_REF + "{model}")
        except Exception as exc:  # a type pydantic cannot describe: say so, do not fail
            return {"description": f"{getattr(tp, '__name__', tp)!s}: no schema ({exc})"}
        return self._hoist(schema, tp)

    def _msgspec(self, tp: Any) -> dict[str, Any]:
        import msgspec

        (schema,), components = msgspec.json.schema_components(
            (tp,), ref_template=_REF + "{name}"
        )
        for name, definition in components.items():
            self.schemas[component_key(name)] = definition
        return dict(schema)

    def _hoist(self, schema: dict[str, Any], tp: Any) -> dict[str, Any]:
        for name, definition in schema.pop("$defs", {}).items():
            self.schemas[component_key(name)] = definition
        name = getattr(tp, "__name__", None)
        if isinstance(tp, type) and name and schema.get("type") == "object":
            key = component_key(name)
            self.schemas[key] = schema
            return {"$ref": _REF + key}
        return schema

    # -- protobuf --------------------------------------------------------------------------

    def _protobuf(self, descriptor: Any) -> dict[str, Any]:
        key = component_key(descriptor.full_name)
        if key not in self.schemas:
            self.schemas[key] = {}  # placeholder: a recursive message refers to itself
            self.schemas[key] = {
                "type": "object",
                "title": descriptor.name,
                "properties": {
                    field.json_name: self._proto_field(field) for field in descriptor.fields
                },
            }
        return {"$ref": _REF + key}

    def _proto_field(self, field: Any) -> dict[str, Any]:
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            value = message.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self._proto_scalar(value)}
        item = self._proto_scalar(field)
        repeated = getattr(field, "is_repeated", None)
        if repeated is None:  # protobuf < 5.x spelling
            repeated = field.label == field.LABEL_REPEATED
        return {"type": "array", "items": item} if repeated else item

    def _proto_scalar(self, field: Any) -> dict[str, Any]:
        kind = field.type
        if kind == field.TYPE_MESSAGE:
            return self._protobuf(field.message_type)
        if kind == field.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        if kind == field.TYPE_STRING:
            return {"type": "string"}
        if kind == field.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        if kind == field.TYPE_BOOL:
            return {"type": "boolean"}
        if kind in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
            return {"type": "number"}
        if kind in (
            field.TYPE_INT64, field.TYPE_UINT64, field.TYPE_SINT64,
            field.TYPE_FIXED64, field.TYPE_SFIXED64,
        ):  # fmt: skip
            return {"type": "string", "format": "int64"}  # proto3 JSON: 64-bit as a string
        return {"type": "integer", "format": "int32"}
