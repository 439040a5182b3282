"""framework.validation: storable text, integer ranges, @validated, bounded echoes (item 9)."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, ValidationError

from framework.errors import Error
from framework.middleware import validate
from framework.validation import (
    ECHO_LIMIT,
    INT64_MAX,
    Int32,
    Int64,
    StorableText,
    check_storable_text,
    excerpt,
    validated,
)

Name = Annotated[str, StorableText(min_length=1, max_length=8)]


class Row(BaseModel):
    name: Name
    small: Int32 = 0
    big: Int64 = 0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "a\x00"}, "name"),
        ({"name": "\ud800"}, "name"),
        ({"name": "x" * 9}, "name"),
        ({"name": ""}, "name"),
        ({"name": "ok", "small": 2**31}, "small"),
        ({"name": "ok", "big": INT64_MAX + 1}, "big"),
        ({"name": "ok", "big": -(2**63) - 1}, "big"),
    ],
)
def test_model_refuses_what_a_column_cannot_store(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Row.model_validate(data)
    assert [e["loc"] for e in raised.value.errors()] == [(field,)]


def test_storable_limits_are_in_the_json_schema() -> None:
    name = Row.model_json_schema()["properties"]["name"]
    assert (name["minLength"], name["maxLength"]) == (1, 8)


def test_check_storable_text_for_plain_callers() -> None:
    assert check_storable_text("héllo") == "héllo"
    for bad in ("a\x00", "\udc80"):
        with pytest.raises(ValueError):
            check_storable_text(bad)


async def test_validated_names_the_argument_on_sync_and_async_functions() -> None:
    @validated
    def put(name: Name, count: Int32 = 0) -> str:
        return name

    @validated
    async def put_async(name: Name, count: Int32 = 0) -> str:
        return name

    assert put("ok") == "ok" and await put_async("ok", 3) == "ok"
    for call in (lambda: put("a\x00"), lambda: put("ok", 2**40)):
        with pytest.raises(Error) as raised:
            call()
        assert raised.value.code == 400 and raised.value.reason == "VALIDATOR"
    with pytest.raises(Error, match="name: must not contain NUL"):
        await put_async("a\x00")
    with pytest.raises(Error, match="count: Input should be less than or equal to 2147483647"):
        await put_async("ok", 2**40)


async def test_a_validation_error_raised_by_the_body_is_not_blamed_on_the_caller() -> None:
    @validated
    async def buggy(name: Name) -> Row:
        return Row.model_validate({"name": ""})  # a server bug, not bad input

    with pytest.raises(ValidationError):
        await buggy("ok")


class _Tags(BaseModel):
    tags: dict[str, int]


class _Request:
    def __init__(self, text: str, *, pydantic: bool) -> None:
        self.text, self.pydantic = text, pydantic

    def validate(self) -> None:
        if self.pydantic:  # the dict key is in the error's field path
            _Tags.model_validate({"tags": {self.text: "x"}})
        raise ValueError(f"bad text {self.text}")


@pytest.mark.parametrize("pydantic", [True, False])
async def test_validate_middleware_echoes_at_most_an_excerpt(pydantic: bool) -> None:
    async def handler(request: object) -> object:
        return request

    with pytest.raises(Error) as raised:
        await validate()(handler)(_Request("k" * 65_000, pydantic=pydantic))
    assert raised.value.reason == "VALIDATOR"
    assert "kkkk" in raised.value.message
    assert len(raised.value.message) <= ECHO_LIMIT * 2, len(raised.value.message)
    assert excerpt("k" * 65_000) == "k" * ECHO_LIMIT + "…"
