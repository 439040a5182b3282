"""Issue 8 item 16 (WebSocket): stop waits for a handler that already answered its client."""

from __future__ import annotations

import asyncio

from framework.transport.websocket import Session, WebSocketServer

from .conftest import open_client, request


async def test_item16_ws_stop_waits_for_a_handler_still_running_after_its_answer() -> None:
    cleaning = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []
    ws = WebSocketServer()

    @ws.on("job")
    async def job(session: Session) -> None:
        await session.send({"status": "accepted"})  # the client has its answer now
        try:
            cleaning.set()
            await release.wait()
        finally:
            finished.append("cleanup")

    await ws.start()
    async with open_client(ws.endpoint) as client:
        assert await request(client, "job") == {"status": "accepted"}
        await asyncio.wait_for(cleaning.wait(), 5)
        stopping = asyncio.create_task(ws.stop(30))
        done, _ = await asyncio.wait({stopping}, timeout=0.5)
        assert not done, "stop() returned while the handler was still running"
        release.set()
        await asyncio.wait_for(stopping, 10)
        assert finished == ["cleanup"]
        await client.wait_closed()
        assert client.close_code == 1001  # going away, once the handler was done
