"""The conformance suite's TcpProxy forwards bytes both ways and drops connections on demand
(the Kafka conformance tests rely on it to cut clients as a broker would)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from framework.testing.conformance import TcpProxy


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()


async def _round_trip(
    port: int, payload: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    async with asyncio.timeout(10):
        assert await reader.readexactly(len(payload)) == payload
    return reader, writer


async def test_forwards_both_ways_then_drops_and_accepts_again(echo_port: int) -> None:
    proxy = TcpProxy("127.0.0.1", echo_port).start()
    try:
        payload = bytes(range(256)) * 4096  # 1 MiB: several reads and writes each way
        reader, writer = await _round_trip(proxy.port, payload)
        assert await asyncio.to_thread(proxy.drop) == 1
        async with asyncio.timeout(10):
            rest = await reader.read()  # the connection ends: EOF or reset
        assert rest == b""
        writer.close()
        _, again = await _round_trip(proxy.port, b"after the drop")  # still listening
        again.close()
    finally:
        await asyncio.to_thread(proxy.stop)
    assert proxy.drops == 1
