"""Issue 8 item 16 (HTTP): stop waits for work still running after the response was sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from fastapi import BackgroundTasks
from fastapi.responses import StreamingResponse

from framework.transport.http import HttpServer, Router


async def test_item16_http_stop_waits_for_a_background_task_after_the_response() -> None:
    running = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []

    async def cleanup() -> None:
        running.set()
        await release.wait()
        finished.append("cleanup")

    router = Router()

    @router.post("/work", status_code=202)
    async def work(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(cleanup)
        return {"status": "accepted"}

    server = HttpServer(port=0)
    server.include_router(router)
    await server.start()
    async with httpx.AsyncClient(base_url=server.endpoint, timeout=10) as client:
        assert (await client.post("/work")).status_code == 202  # the client has its answer
    await asyncio.wait_for(running.wait(), 5)

    stopping = asyncio.create_task(server.stop(30))
    done, _ = await asyncio.wait({stopping}, timeout=0.5)
    assert not done, "stop() returned while the background task was still running"
    release.set()
    await asyncio.wait_for(stopping, 10)
    assert finished == ["cleanup"]


async def test_item16_http_stop_waits_for_a_streaming_response_to_finish() -> None:
    first_sent = asyncio.Event()
    release = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"first\n"
        first_sent.set()
        await release.wait()
        yield b"last\n"

    router = Router()

    @router.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(body(), media_type="text/plain")

    server = HttpServer(port=0)
    server.include_router(router)
    await server.start()
    async with (
        httpx.AsyncClient(base_url=server.endpoint, timeout=10) as client,
        client.stream("GET", "/stream") as response,
    ):
        lines = response.aiter_lines()
        assert await anext(lines) == "first"
        await asyncio.wait_for(first_sent.wait(), 5)
        stopping = asyncio.create_task(server.stop(30))
        done, _ = await asyncio.wait({stopping}, timeout=0.5)
        assert not done, "stop() returned while the response was still streaming"
        release.set()
        assert await anext(lines) == "last"
    await asyncio.wait_for(stopping, 10)
