from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pydantic
import pytest
from google.protobuf import wrappers_pb2
from typing_extensions import TypedDict

from framework.broker.codec import (
    BytesCodec,
    DecodeError,
    JsonCodec,
    ProtobufCodec,
    StrCodec,
    decoder_for,
)


class Order(pydantic.BaseModel):
    id: int
    item: str


class OrderStruct(msgspec.Struct):
    id: int
    item: str


@dataclasses.dataclass
class OrderData:
    id: int
    item: str


class OrderDict(TypedDict):
    id: int
    item: str


BODY = b'{"id": 7, "item": "book"}'


@pytest.mark.parametrize(
    ("type_", "expected"),
    [
        (Order, Order(id=7, item="book")),
        (OrderStruct, OrderStruct(id=7, item="book")),
        (OrderData, OrderData(id=7, item="book")),
        (OrderDict, {"id": 7, "item": "book"}),
        (dict, {"id": 7, "item": "book"}),
        (dict[str, Any], {"id": 7, "item": "book"}),
        (Any, {"id": 7, "item": "book"}),
        (bytes, BODY),
        (str, BODY.decode()),
    ],
)
def test_json_decodes_into_the_annotated_type(type_: Any, expected: Any) -> None:
    value = JsonCodec().decode(BODY, type_)
    assert value == expected
    assert type(value) is type(expected)


def test_json_decodes_generic_lists() -> None:
    assert JsonCodec().decode(b"[1, 2, 3]", list[int]) == [1, 2, 3]
    assert JsonCodec().decode(b"[1, 2]", list) == [1, 2]


@pytest.mark.parametrize(
    ("type_", "body", "fragment"),
    [
        (Order, b'{"id": "x", "item": "book"}', "invalid Order: id: Input should be a valid"),
        (Order, b'{"id": 1}', "item: Field required"),
        (Order, b"not json", "invalid Order: Invalid JSON"),
        (OrderStruct, b'{"id": "x", "item": "b"}', "invalid OrderStruct: Expected `int`"),
        (OrderData, b'{"id": 1}', "invalid OrderData: item: Field required"),
        (dict, b"[1]", "expected a JSON dict, got list"),
        (Any, b"{oops", "invalid JSON"),
        (str, b"\xff\xfe", "not UTF-8 text"),
    ],
)
def test_decode_failures_carry_a_readable_reason(type_: Any, body: bytes, fragment: str) -> None:
    with pytest.raises(DecodeError) as info:
        JsonCodec().decode(body, type_)
    assert fragment in info.value.reason
    assert "\n" not in info.value.reason


def test_validation_reason_is_bounded_to_three_errors() -> None:
    class Wide(pydantic.BaseModel):
        a: int
        b: int
        c: int
        d: int
        e: int

    with pytest.raises(DecodeError) as info:
        JsonCodec().decode(b"{}", Wide)
    assert info.value.reason.endswith("(+2 more)")


def test_json_encodes_models_structs_dataclasses_and_passes_bytes_through() -> None:
    codec = JsonCodec()
    assert codec.encode(Order(id=1, item="a")) == b'{"id":1,"item":"a"}'
    assert codec.encode(OrderStruct(id=1, item="a")) == b'{"id":1,"item":"a"}'
    assert codec.encode(OrderData(id=1, item="a")) == b'{"id":1,"item":"a"}'
    assert codec.encode({"order": Order(id=1, item="a"), 2: {3}}) == (
        b'{"order":{"id":1,"item":"a"},"2":[3]}'
    )
    assert codec.encode(b"\x00raw") == b"\x00raw"
    assert codec.encode("text") == b"text"
    with pytest.raises(TypeError, match="JsonCodec cannot encode object"):
        codec.encode(object())


def test_decoders_are_resolved_once_per_type() -> None:
    codec = JsonCodec()
    assert codec.decoder(Order) is codec.decoder(Order)
    assert decoder_for(codec, Order)(BODY) == Order(id=7, item="book")


def test_unsupported_target_types_fail_when_the_decoder_is_built() -> None:
    class Opaque:
        pass

    with pytest.raises(TypeError, match="cannot decode into"):
        JsonCodec().decoder(Opaque)
    with pytest.raises(TypeError, match="BytesCodec decodes into bytes or str"):
        BytesCodec().decoder(Order)
    with pytest.raises(TypeError, match="StrCodec decodes into str or bytes"):
        StrCodec().decoder(int)


def test_bytes_and_str_codecs() -> None:
    assert BytesCodec().encode(bytearray(b"ab")) == b"ab"
    assert BytesCodec().decode(b"ab", Any) == b"ab"
    assert BytesCodec().decode(b"ab", str) == "ab"
    assert StrCodec().encode("é") == "é".encode()
    assert StrCodec().decode("é".encode(), Any) == "é"
    with pytest.raises(TypeError):
        StrCodec().encode(1)


def test_protobuf_codec_round_trip_and_failure() -> None:
    codec = ProtobufCodec()
    data = codec.encode(wrappers_pb2.StringValue(value="hi"))
    assert codec.decode(data, wrappers_pb2.StringValue).value == "hi"
    with pytest.raises(DecodeError, match="invalid StringValue"):
        codec.decode(b"\xff\xff\xff", wrappers_pb2.StringValue)
    with pytest.raises(TypeError, match="protobuf message classes"):
        codec.decoder(Order)
