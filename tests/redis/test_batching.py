"""Redis' batching publisher: its own XADD encoding keeps bodies, keys, headers and the
broker's trimming exactly as ``publish`` writes them."""

from __future__ import annotations

import asyncio

import pytest

from framework.transport.redis.entries import encode_fields
from tests.redis.helpers import RedisEnv

pytestmark = pytest.mark.redis


async def test_entries_match_what_publish_writes(env: RedisEnv) -> None:
    broker = await env.connected()
    headers = {"x-text": "grüße ✓", "x-binary": b"\xc3\x28".decode("utf-8", "surrogateescape"),
               "x-empty": ""}  # fmt: skip
    body = bytes(range(256)) * 4
    await broker.publish("one", body, key=b"\x00k\r\n", headers=headers)
    async with broker.batch_publisher(chunk_size=3) as publisher:
        futures = [
            await publisher.submit("many", body, key=b"\x00k\r\n", headers=headers),
            await publisher.submit("many", b"", key=None, headers=None),
            await publisher.submit("many", b"$3\r\nfoo\r\n"),  # RESP framing in a body
        ]
        results = await asyncio.gather(*futures)
    entries = await env.entries("many")
    [(_, by_publish)] = await env.entries("one")
    assert [entry_id for entry_id, _ in entries] == [r.message_id for r in results]
    assert entries[0][1] == by_publish == encode_fields(body, b"\x00k\r\n", headers)
    assert entries[1][1] == encode_fields(b"", None, None)
    assert entries[2][1] == encode_fields(b"$3\r\nfoo\r\n", None, None)


async def test_the_brokers_exact_maxlen_trims_batched_entries(env: RedisEnv) -> None:
    broker = await env.connected(maxlen=5, approximate_trim=False)
    async with broker.batch_publisher(chunk_size=8) as publisher:
        futures = [await publisher.submit("trimmed", b"%d" % i) for i in range(20)]
        await asyncio.gather(*futures)
    entries = await env.entries("trimmed")
    assert [fields[b"body"] for _, fields in entries] == [b"%d" % i for i in range(15, 20)]


async def test_minid_trimming_is_sent_too(env: RedisEnv) -> None:
    broker = await env.connected(minid_age=3600.0, approximate_trim=False)
    await env.admin.xadd(env.key("aged"), {b"body": b"ancient"}, id="1-0")  # long past
    async with broker.batch_publisher() as publisher:
        assert (await publisher.publish("aged", b"new")).message_id
        with pytest.raises(NotImplementedError, match="partition"):  # refused, not ignored
            await publisher.submit("aged", b"pinned", partition=0)
    assert [fields[b"body"] for _, fields in await env.entries("aged")] == [b"new"]
