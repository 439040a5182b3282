"""Fixtures for the reference service: a wired App on SQLite or PostgreSQL, ports 0."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from framework import App
from tests.services import postgres_url, require_url

from app_template.conf.conf import Bootstrap
from app_template.container import Container
from app_template.wire import wire_app

#: A well-formed order id (32 hex digits) the service never issues: a uuid4 has version 4.
UNKNOWN_ID = "0" * 32


def make_bootstrap(db_url: str, schema: str | None = None) -> Bootstrap:
    return Bootstrap.model_validate(
        {
            "server": {
                "http": {"host": "127.0.0.1", "port": 0},
                "grpc": {"host": "127.0.0.1", "port": 0},
                "websocket": {"host": "127.0.0.1", "port": 0},
            },
            "data": {"database": {"url": db_url, "schema": schema}},
            "app": {"stop_timeout": 5},
        }
    )


#: The databases a service fixture runs on: SQLite in-process, PostgreSQL when reachable. The
#: ``services`` marker is what a scaffolded project's default ``pytest`` run deselects.
DATABASES = ["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.services])]


@pytest.fixture(params=DATABASES)
async def wired(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[App, Container]]:
    """The reference service, started, once per database, with its container (to reach its
    database or use case directly)."""
    schema = None
    if request.param == "postgres":
        require_url(postgres_url(), "PostgreSQL")
        url, schema = postgres_url(), f"pykratos_test_{uuid.uuid4().hex[:12]}"
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}"
    container = Container()
    app = wire_app(make_bootstrap(url, schema), container)
    app.handle_signals = False
    async with app:
        yield app, container
    if schema is not None:
        await _drop_schema(schema)


@pytest.fixture
def service(wired: tuple[App, Container]) -> App:
    """The reference service, started, once per database."""
    return wired[0]


async def _drop_schema(schema: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(postgres_url())
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await engine.dispose()


def endpoint(app: App, scheme: str) -> str:
    for server in app.servers:
        if server.endpoint.startswith(scheme + "://"):
            return server.endpoint
    raise LookupError(f"no {scheme} server in {app.servers}")
