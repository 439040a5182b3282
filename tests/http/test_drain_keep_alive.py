"""A graceful stop answers every request the server has read, on kept-alive connections too:
one queued behind another (pipelined), one whose head was arriving when the stop began, and
every request of keep-alive clients sending continuously; the last response on a connection
says ``Connection: close``; new connections are refused once the intake stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from framework.transport.http import HttpServer, Router

from .rawhttp import RawResponse, connect, read_eof, read_response, request


class Work:
    def __init__(self) -> None:
        self.handled: list[str] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    def router(self) -> Router:
        router = Router()

        @router.get("/work")
        async def work(id: str) -> dict[str, str]:
            self.handled.append(id)
            self.entered.set()
            await self.release.wait()
            return {"id": id}

        return router


@pytest.fixture(params=["httptools", "h11"])
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[HttpServer, Work]]:
    work = Work()
    server = HttpServer(port=0, http=request.param)
    server.include_router(work.router())
    await server.start()
    try:
        yield server, work
    finally:
        await server.stop(5)


def _id(response: RawResponse) -> str:
    import json

    value: str = json.loads(response.body)["id"]
    return value


async def test_a_pipelined_request_queued_behind_a_running_one_is_answered(
    served: tuple[HttpServer, Work],
) -> None:
    server, work = served
    work.release.clear()
    reader, writer = await connect(server.endpoint)
    writer.write(request("/work?id=1") + request("/work?id=2"))
    await asyncio.wait_for(work.entered.wait(), 5)
    await asyncio.sleep(0.05)  # the second request is read (queued) by now
    await server.stop_intake()
    stopping = asyncio.create_task(server.stop(10))
    work.release.set()
    first, second = await read_response(reader), await read_response(reader)
    assert (first.status, _id(first), first.closes) == (200, "1", False)
    assert (second.status, _id(second), second.closes) == (200, "2", True)
    assert await read_eof(reader, 5) == b""
    writer.close()  # the client closes its side once it sees the server's end
    await stopping


async def test_a_request_whose_head_was_arriving_at_the_stop_is_answered(
    served: tuple[HttpServer, Work],
) -> None:
    server, _ = served
    reader, writer = await connect(server.endpoint)
    writer.write(request("/work?id=1"))
    assert (await read_response(reader)).status == 200
    whole = request("/work?id=2")
    writer.write(whole[:20])  # part of the next request's head
    await asyncio.sleep(0.05)
    await server.stop_intake()
    stopping = asyncio.create_task(server.stop(10))
    await asyncio.sleep(0.05)
    writer.write(whole[20:])
    response = await read_response(reader)
    assert (response.status, _id(response), response.closes) == (200, "2", True)
    assert await read_eof(reader, 5) == b""
    writer.close()  # the client closes its side once it sees the server's end
    await stopping


async def test_idle_kept_alive_connections_close_at_once(served: tuple[HttpServer, Work]) -> None:
    server, _ = served
    reader, writer = await connect(server.endpoint)
    writer.write(request("/work?id=1"))
    assert (await read_response(reader)).status == 200
    await server.stop_intake()
    assert await read_eof(reader, 1) == b""  # well before the 5 s keep-alive timeout
    writer.close()


async def _client(
    endpoint: str, name: str, answered: dict[str, int], errors: list[str], window: int
) -> None:
    """Keeps ``window`` requests outstanding on one connection (``window`` > 1: pipelined),
    sending the next as each response comes, until the server says it closes or closes."""
    reader, writer = await connect(endpoint)
    outstanding: list[str] = []
    sent = 0
    try:
        while True:
            while len(outstanding) < window:
                sent += 1
                outstanding.append(f"{name}-{sent}")
                writer.write(request(f"/work?id={outstanding[-1]}"))
            try:
                await writer.drain()
                response = await read_response(reader)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    errors.append(f"{outstanding[0]}: response cut short")
                return  # closed before these requests were read: the client may retry them
            except ConnectionResetError:
                errors.append(f"{outstanding}: reset")
                return
            rid = outstanding.pop(0)
            assert _id(response) == rid
            answered[rid] = response.status
            if response.closes:
                return
    finally:
        writer.close()


async def test_a_burst_of_keep_alive_requests_is_answered_through_the_stop(
    served: tuple[HttpServer, Work],
) -> None:
    server, work = served
    answered: dict[str, int] = {}
    errors: list[str] = []
    clients = [
        asyncio.create_task(_client(server.endpoint, f"c{i}", answered, errors, 1 + i % 3))
        for i in range(9)
    ]
    deadline = asyncio.get_running_loop().time() + 10
    while len(answered) < 200:  # all clients are busy
        assert asyncio.get_running_loop().time() < deadline, "the clients got no answers"
        await asyncio.sleep(0.01)
    await server.stop_intake()
    with pytest.raises(OSError):
        await connect(server.endpoint)  # new connections are refused
    await server.stop(10)
    await asyncio.wait_for(asyncio.gather(*clients), 10)
    unanswered = [rid for rid in work.handled if rid not in answered]
    assert not unanswered, f"handled but never answered: {unanswered[:10]}"
    # The server reads nothing it will not answer, and closes only once it read everything it
    # received: no reset, no response cut short.
    assert not errors, errors
    assert set(answered.values()) == {200}
