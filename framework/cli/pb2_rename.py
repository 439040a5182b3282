"""Rename the package of protoc-generated Python code without protoc.

``pykratos new`` must work offline with only pykratos installed (no grpcio-tools), yet the
template's ``x_pb2.py`` embeds a serialized ``FileDescriptorProto`` whose ``name`` (field 1)
and ``dependency`` entries (field 3) are proto paths such as
``app_template/api/order/v1/order.proto``. A plain text substitution would break that
length-prefixed encoding, so this module re-encodes those two top-level fields and shifts the
``_serialized_start``/``_serialized_end`` offsets that follow them; everything else (module
names, comments) is ordinary text renaming. The result is what protoc would have generated
for the renamed file.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

__all__ = ["rename_pb2_source", "rename_serialized_file"]

_NAME = 1
_DEPENDENCY = 3
_OFFSET_RE = re.compile(r"(\._serialized_(?:start|end)=)(\d+)")


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def rename_serialized_file(
    data: bytes, rename: Callable[[str], str]
) -> tuple[bytes, list[tuple[int, int]]]:
    """Apply ``rename`` to the proto paths of a serialized ``FileDescriptorProto``.

    Returns the new bytes and the edits as ``(old end offset of the field, size change)``,
    for :func:`_shift` to move later offsets.
    """
    out = bytearray()
    edits: list[tuple[int, int]] = []
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, body = _read_varint(data, pos)
            pos = body + length
            if field in (_NAME, _DEPENDENCY):
                text = rename(data[body:pos].decode("utf-8")).encode("utf-8")
                encoded = _varint(key) + _varint(len(text)) + text
                out += encoded
                edits.append((pos, len(encoded) - (pos - start)))
                continue
        else:
            raise ValueError(f"unsupported wire type {wire} in a FileDescriptorProto")
        out += data[start:pos]
    return bytes(out), edits


def _shift(offset: int, edits: list[tuple[int, int]]) -> int:
    return offset + sum(delta for end, delta in edits if end <= offset)


def _serialized_literal(source: str) -> ast.Constant:
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, bytes)
        ):
            return node.args[0]
    raise ValueError("no AddSerializedFile(b'...') call: not a protoc-generated _pb2.py")


def rename_pb2_source(
    source: str, rename_path: Callable[[str], str], rename_text: Callable[[str], str]
) -> str:
    """Rename a generated ``x_pb2.py``: proto paths inside the descriptor, then the text."""
    literal = _serialized_literal(source)
    assert isinstance(literal.value, bytes)
    data, edits = rename_serialized_file(literal.value, rename_path)
    lines = source.splitlines(keepends=True)
    line = literal.lineno - 1
    assert literal.end_lineno == literal.lineno, "protoc writes the descriptor on one line"
    raw = lines[line].encode("utf-8")  # ast column offsets count UTF-8 bytes
    assert literal.end_col_offset is not None
    lines[line] = (
        raw[: literal.col_offset].decode("utf-8")
        + repr(data)
        + raw[literal.end_col_offset :].decode("utf-8")
    )
    renamed = "".join(lines)
    renamed = _OFFSET_RE.sub(lambda m: f"{m.group(1)}{_shift(int(m.group(2)), edits)}", renamed)
    # The literal was already renamed structurally: shield it from the text pass.
    head, marker, tail = renamed.partition(repr(data))
    return rename_text(head) + marker + rename_text(tail)
