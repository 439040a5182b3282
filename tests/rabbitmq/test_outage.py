"""Issue 8 items 19 and 25 on RabbitMQ: an outage at runtime, and start errors that say
what is wrong (unknown vhost, wrong password, refused connection) with the real elapsed time.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from framework.broker import BROKER_UNAVAILABLE, BrokerUnavailableError
from framework.errors import from_exception
from framework.transport.rabbitmq import PublishFailedError, RabbitBroker, RabbitUnavailableError
from tests.rabbitmq.helpers import RabbitEnv, rabbitmqctl
from tests.services import amqp_url, free_port

pytestmark = pytest.mark.rabbitmq

CLIENT_LOGGERS = ("aio_pika", "aiormq")


def _client_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.split(".")[0] in CLIENT_LOGGERS and r.levelno > logging.DEBUG
    ]


class _StateWatcher(logging.Handler):
    """Sets an event when the framework logs the broker's state ``state``."""

    def __init__(self, state: str) -> None:
        super().__init__()
        self.state = state
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "state", None) == self.state:
            self.seen.set()


@pytest.fixture
def watch_recovered() -> Iterator[_StateWatcher]:
    watcher = _StateWatcher("recovered")
    logger = logging.getLogger("pykratos.broker")
    logger.addHandler(watcher)
    try:
        yield watcher
    finally:
        logger.removeHandler(watcher)


async def test_outage_publish_fails_with_503_and_logs_one_line_per_state_change(
    rabbit_url: str, caplog: pytest.LogCaptureFixture, watch_recovered: _StateWatcher
) -> None:
    vhost = f"pykratos-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    exists = True
    env = RabbitEnv(amqp_url(vhost))
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        publisher = await env.connected(
            mandatory=False, publish_timeout=1.0, reconnect_interval=0.05
        )
        await publisher.publish(env.topic(), b"{}")
        caplog.set_level(logging.INFO)
        # Deleting the vhost drops the connection and refuses every reconnect attempt:
        # aio-pika logs one "Connection attempt ... failed" line per attempt (20 per second).
        await asyncio.to_thread(rabbitmqctl, "delete_vhost", vhost)
        exists = False
        started = time.monotonic()
        with pytest.raises(BrokerUnavailableError) as caught:
            await publisher.publish(env.topic(), b"{}")
        assert time.monotonic() - started < 4
        assert isinstance(caught.value, PublishFailedError)
        error = from_exception(caught.value)
        assert (error.code, error.reason, error.grpc_status) == (
            503,
            BROKER_UNAVAILABLE,
            "UNAVAILABLE",
        )
        unavailable = [r for r in caplog.records if getattr(r, "state", None) == "unavailable"]
        assert len(unavailable) == 1 and unavailable[0].levelno == logging.WARNING
        assert len(_client_lines(caplog)) <= 2, _client_lines(caplog)

        rabbitmqctl("add_vhost", vhost)
        exists = True
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        async with asyncio.timeout(20):
            await watch_recovered.seen.wait()
        await publisher.publish(env.topic(), b"{}")
        recovered = [
            r.getMessage() for r in caplog.records if getattr(r, "state", "") == "recovered"
        ]
        assert len(recovered) == 1 and "suppressed" in recovered[0], recovered
    finally:
        await env.aclose()
        if exists:
            rabbitmqctl("delete_vhost", vhost)


async def _connect_error(url: str, caplog: pytest.LogCaptureFixture) -> tuple[str, float]:
    caplog.set_level(logging.INFO)
    broker = RabbitBroker(url, connect_timeout=10)
    started = time.monotonic()
    with pytest.raises(RabbitUnavailableError) as caught:
        await broker.connect()
    elapsed = time.monotonic() - started
    message = str(caught.value)
    # Before the fix: "within 10s" after 0.01 s, an object repr, and aio-pika's
    # "Reconnecting after 1 seconds" although nothing reconnects.
    assert "within 10s" not in message and " object at 0x" not in message, message
    assert not any("Reconnecting" in line for line in _client_lines(caplog)), caplog.text
    assert elapsed < 5
    return message, elapsed


async def test_unknown_vhost_is_named(rabbit_url: str, caplog: pytest.LogCaptureFixture) -> None:
    message, _ = await _connect_error(amqp_url("nope-vhost"), caplog)
    assert "vhost 'nope-vhost' not found or access refused for user 'guest'" in message
    assert "after 0." in message, message  # the real elapsed time


async def test_wrong_password_is_named(rabbit_url: str, caplog: pytest.LogCaptureFixture) -> None:
    url = urlsplit(amqp_url())
    user = url.username or "guest"
    wrong = url._replace(netloc=f"{user}:wrong-{uuid.uuid4().hex[:6]}@{url.hostname}:{url.port}")
    message, _ = await _connect_error(urlunsplit(wrong), caplog)
    assert f"login refused for user '{user}'" in message
    assert "wrong" not in message.split("@")[0], "the password is not shown"


async def test_refused_connection_is_named(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    url = urlsplit(amqp_url())._replace(netloc=f"guest:guest@127.0.0.1:{port}", path="/")
    message, _ = await _connect_error(urlunsplit(url), caplog)
    assert f"connection refused by 127.0.0.1:{port}" in message
