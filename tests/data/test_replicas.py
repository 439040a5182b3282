"""Two relays on one PostgreSQL outbox: each message once, per-key order kept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from framework.broker import MESSAGE_ID
from framework.data import OutboxRelay, TransactionalOutbox
from tests.data.conftest import RecordingBroker, drop_schema, eventually, make_engine


class SlowBroker(RecordingBroker):
    """Confirms after a short delay, so the two relays' rounds overlap."""

    async def publish(self, topic: str, body: bytes, **kwargs: object) -> object:  # type: ignore[override]
        await asyncio.sleep(0.001)
        return await super().publish(topic, body, **kwargs)  # type: ignore[arg-type]


async def test_two_replicas_keep_key_order_and_send_each_message_once(tmp_path: Path) -> None:
    engine, schema = await make_engine("postgres", tmp_path)
    # each replica has its own engine, as two processes would
    engine_b, _ = await make_engine("postgres", tmp_path)
    await engine_b.dispose()

    engine_b = create_async_engine(
        engine.url, connect_args={"server_settings": {"search_path": schema}}
    )
    try:
        uow = TransactionalOutbox(async_sessionmaker(engine))
        shared = SlowBroker()  # one broker log shared by both, as the real broker would be
        relays = [
            OutboxRelay(e, shared, batch_size=20, poll_interval=0.05, name=f"relay-{i}")
            for i, e in enumerate((engine, engine_b))
        ]
        for relay in relays:
            await relay.start()
        total, keys = 600, 12

        async def writer(w: int) -> None:
            for n in range(w, total, 4):
                async with uow.begin() as tx:
                    tx.add_message("t", {"n": n}, key=f"k{n % keys}")

        await asyncio.gather(*(writer(w) for w in range(4)))
        await eventually(lambda: len(shared.published) >= total, timeout=60)
        for relay in relays:
            await relay.stop(5)
        assert all(relay.sent > 0 for relay in relays), [r.sent for r in relays]
        ids = [m.headers[MESSAGE_ID] for m in shared.published]
        assert len(ids) == len(set(ids)) == total  # nothing sent twice, nothing missing
        for k in range(keys):
            seen = [json.loads(m.body)["n"] for m in shared.published if m.key == f"k{k}".encode()]
            assert seen == sorted(seen), f"key k{k} out of order"
    finally:
        await engine.dispose()
        await engine_b.dispose()
        await drop_schema(schema)
