"""pytest plugin of the test kit (entry point ``pytest11``: loaded wherever pykratos is
installed).

Define one fixture, ``pykratos_app``, returning the App to test (not started); then::

    async def test_create(http_client):
        assert (await http_client.post("/v1/orders", json={...})).status_code == 201

    @pytest.mark.real_brokers          # same test, on the brokers the config names
    async def test_flow(kit): ...

Fixtures: ``kit`` (the started :class:`~framework.testing.TestApp`), ``http_client``,
``grpc_channel``, ``test_broker``, ``dependency_overrides`` (an
:class:`~framework.testing.Overrides` undone at teardown: use it in ``pykratos_app`` before
the App is wired). ``--real-brokers`` runs every kit test on the real brokers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar, cast

import pytest

from framework.testing.app import TestApp
from framework.testing.broker import TestBroker
from framework.testing.overrides import Overrides

F = TypeVar("F", bound=Callable[..., Any])


def _async_fixture(fn: F) -> F:
    # Strict mode needs pytest-asyncio's decorator (auto mode accepts both); the plugin loads
    # in every pytest run of an environment with pykratos, so do not require the package.
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - pytest-asyncio is in the dev extra
        return cast(F, pytest.fixture(fn))
    return cast(F, pytest_asyncio.fixture(fn))

__all__ = [
    "dependency_overrides",
    "grpc_channel",
    "http_client",
    "kit",
    "pykratos_app",
    "test_broker",
]

REAL_BROKERS = "real_brokers"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--real-brokers",
        action="store_true",
        help="pykratos kit: run every test on the real brokers the config names",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{REAL_BROKERS}: the pykratos kit leaves the brokers real (Kafka, RabbitMQ, ...) "
        "instead of the in-memory test broker",
    )


@pytest.fixture
def pykratos_app() -> Any:
    """The App under test: define a fixture of this name in your conftest."""
    raise pytest.UsageError(
        "define a fixture named pykratos_app that returns your (not started) App, "
        "e.g. wire_app(bootstrap)"
    )


@pytest.fixture
def dependency_overrides() -> Iterator[Overrides]:
    """``dependency_overrides(container.repo, fake)``; every override undone after the test."""
    overrides = Overrides()
    try:
        yield overrides
    finally:
        overrides.reset()


@_async_fixture
async def kit(request: pytest.FixtureRequest, pykratos_app: Any) -> AsyncIterator[TestApp]:
    """``pykratos_app`` started in-process (:class:`TestApp`), stopped after the test."""
    real = (
        request.node.get_closest_marker(REAL_BROKERS) is not None
        or bool(request.config.getoption("--real-brokers", default=False))
    )
    async with TestApp(pykratos_app, real_brokers=real) as started:
        yield started


@pytest.fixture
def http_client(kit: TestApp) -> Any:
    """The ``httpx.AsyncClient`` on the App's HTTP server (no socket)."""
    if kit.http is None:
        raise LookupError("the App has no HTTP server")
    return kit.http


@pytest.fixture
def grpc_channel(kit: TestApp) -> Any:
    """A ``grpc.aio`` channel to the App's gRPC server."""
    if kit.grpc is None:
        raise LookupError("the App has no gRPC server")
    return kit.grpc


@pytest.fixture
def test_broker(kit: TestApp) -> TestBroker:
    """The :class:`TestBroker` of the App (recordings, ``await test_broker.handled(h)``)."""
    return kit.broker
