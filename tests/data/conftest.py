"""An engine with the outbox tables, once on SQLite and once on PostgreSQL (own schema),
and a broker that records what it confirmed and can be taken down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, String, Table
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from framework.broker import Broker, BrokerUnavailableError, PublishResult
from framework.broker.message import Message
from framework.broker.subscriber import SubscriberSpec
from framework.data import metadata
from tests.services import postgres_url, require_url


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (state owned by a relay task or another process)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - the state has no event to wait on
            await asyncio.sleep(0.005)


#: A business table of the tests' own.
business = MetaData()
items = Table("items", business, Column("id", String(64), primary_key=True))


async def make_engine(kind: str, tmp_path: Path) -> tuple[AsyncEngine, str | None]:
    if kind == "postgres":
        require_url(postgres_url(), "PostgreSQL")
        schema = f"pykratos_outbox_{uuid.uuid4().hex[:12]}"
        admin = create_async_engine(postgres_url())
        async with admin.begin() as conn:
            await conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        await admin.dispose()
        engine = create_async_engine(
            postgres_url(), connect_args={"server_settings": {"search_path": schema}}
        )
    else:
        schema = None
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(business.create_all)
    return engine, schema


async def drop_schema(schema: str | None) -> None:
    if schema is None:
        return
    admin = create_async_engine(postgres_url())
    async with admin.begin() as conn:
        await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine, schema = await make_engine(request.param, tmp_path)
    yield engine
    await engine.dispose()
    await drop_schema(schema)


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class RecordingBroker(Broker):
    """Records confirmed publishes; ``down`` makes every publish fail as unavailable;
    ``refuse`` names topics refused permanently (``ValueError``)."""

    kind = "recording"

    def __init__(self) -> None:
        self.published: list[Message] = []
        self.down = False
        self.refuse: set[str] = set()
        self.attempts = 0

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
    ) -> PublishResult:
        self.attempts += 1
        if self.down:
            raise BrokerUnavailableError("down", broker=self.kind, topic=topic, timeout=0)
        if topic in self.refuse:
            raise ValueError(f"topic {topic!r} refused")
        self.published.append(Message(body, topic, key, dict(headers or {})))
        return PublishResult(topic)

    async def subscribe(self, spec: SubscriberSpec, processor: object) -> object:  # type: ignore[override]
        raise NotImplementedError
