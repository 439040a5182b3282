"""Issue 8 item 11 (HTTP): request bodies over ``max_body_size`` are refused with 413
``PAYLOAD_TOO_LARGE`` before they are read whole or parsed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from starlette.requests import Request

from framework.errors import PAYLOAD_TOO_LARGE
from framework.middleware import Handler, access_log, recovery
from framework.transport.http import HttpServer, Router

LIMIT = 1000


class Note(BaseModel):
    text: str


class Calls:
    """Counts the handler runs and records what the middleware chain saw."""

    def __init__(self) -> None:
        self.handled = 0
        self.chain_errors: list[int] = []

    def middleware(self, handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            try:
                return await handler(request)
            except Exception as exc:
                self.chain_errors.append(getattr(exc, "code", 0))
                raise

        return run


def notes_server(calls: Calls, **kwargs: Any) -> HttpServer:
    router = Router()

    @router.post("/notes", status_code=201)
    async def create(note: Note) -> Note:
        calls.handled += 1
        return note

    @router.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    @router.post("/swallow")
    async def swallow(request: Request) -> dict[str, str]:
        try:
            await request.body()
        except Exception:  # careless code: must not turn the refusal into a 200
            return {"status": "fine"}
        return {"status": "read"}

    server = HttpServer(port=0, middlewares=[recovery(), calls.middleware], **kwargs)
    server.include_router(router)
    return server


def note_body(size: int) -> bytes:
    """A JSON ``Note`` of exactly ``size`` bytes."""
    body = b'{"text":"' + b"x" * (size - 11) + b'"}'
    assert len(body) == size
    return body


async def chunks(body: bytes, size: int = 256) -> AsyncIterator[bytes]:
    """``body`` as a stream: httpx sends it chunked, without Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.json() == {
        "code": 413,
        "reason": PAYLOAD_TOO_LARGE,
        "message": f"request body is larger than the {LIMIT} bytes this server accepts",
        "metadata": {"limit": str(LIMIT)},
    }


@pytest.fixture
async def served() -> AsyncIterator[tuple[httpx.AsyncClient, Calls]]:
    calls = Calls()
    server = notes_server(calls, max_body_size=LIMIT)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.endpoint, timeout=10) as client:
            yield client, calls
    finally:
        await server.stop(5)


JSON = {"content-type": "application/json"}


async def test_item11_over_limit_content_length_is_413_without_running_the_route(
    served: tuple[httpx.AsyncClient, Calls], caplog: pytest.LogCaptureFixture
) -> None:
    client, calls = served
    caplog.set_level(logging.WARNING, "pykratos.http")
    for _ in range(3):
        assert_too_large(await client.post("/notes", content=note_body(LIMIT + 1), headers=JSON))
    assert calls.handled == 0 and calls.chain_errors == []
    # Any client can send these: one WARNING line, not one per request.
    refused = [r for r in caplog.records if "refused a 1001-byte body" in r.getMessage()]
    assert len(refused) == 1


async def test_item11_over_limit_chunked_body_is_413_while_streaming(
    served: tuple[httpx.AsyncClient, Calls],
) -> None:
    client, calls = served
    response = await client.post("/notes", content=chunks(note_body(LIMIT + 1)), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_too_large(response)
    assert calls.handled == 0
    assert calls.chain_errors == [413]  # middleware saw the typed error, not a 400 or 500

    assert_too_large(await client.post("/raw", content=chunks(b"y" * (LIMIT * 5))))
    assert_too_large(await client.post("/swallow", content=chunks(b"y" * (LIMIT + 1))))


async def test_item11_bodies_at_the_limit_are_accepted(
    served: tuple[httpx.AsyncClient, Calls],
) -> None:
    client, calls = served
    fixed = await client.post("/notes", content=note_body(LIMIT), headers=JSON)
    assert fixed.status_code == 201
    streamed = await client.post("/notes", content=chunks(note_body(LIMIT)), headers=JSON)
    assert streamed.status_code == 201
    assert calls.handled == 2
    raw = await client.post("/raw", content=chunks(b"y" * LIMIT))
    assert raw.json() == {"size": LIMIT}


async def test_item11_default_limit_is_one_mebibyte_and_none_removes_it() -> None:
    calls = Calls()
    assert notes_server(calls).max_body_size == 1 << 20
    server = notes_server(calls, max_body_size=None)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.endpoint, timeout=30) as client:
            big = await client.post("/raw", content=b"z" * (2 << 20))
    finally:
        await server.stop(5)
    assert big.json() == {"size": 2 << 20}


async def test_item11_access_log_reports_the_refusal_as_413() -> None:
    server_log: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            server_log.append(record)

    logger = logging.getLogger("test.item11.access")
    logger.addHandler(Keep())
    router = Router()

    @router.post("/logged")
    async def logged(note: Note) -> Note:
        return note

    server = HttpServer(port=0, middlewares=[recovery(), access_log(logger)], max_body_size=LIMIT)
    server.include_router(router)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.endpoint, timeout=10) as client:
            response = await client.post("/logged", content=chunks(note_body(LIMIT + 1)))
    finally:
        await server.stop(5)
    assert_too_large(response)
    assert [(r.code, r.reason) for r in server_log] == [  # type: ignore[attr-defined]
        (413, PAYLOAD_TOO_LARGE)
    ]
