"""A core (fire-and-forget) publish the server refuses is reported as that publish's failure.

The refusal comes back only as an asynchronous ``-ERR 'Permissions Violation ...'``: it must
be counted, logged and passed to the publishing handle's ``on_error``, not taken for (and
hidden as) a connection error. Runs a nats-server of its own whose user may not publish to
``forbidden.>``, so the machine's shared server keeps its configuration.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from framework.transport.nats import NatsBroker
from framework.transport.nats.errors import PublishFailedError
from tests.services import free_port, unavailable

pytestmark = pytest.mark.nats

#: The private server listens on loopback only (not a shared service: tests/services.py
#: has no URL for it).
_HOST = "127.0.0.1"


@pytest.fixture
def restricted_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(binary):
        unavailable("nats-server binary not found")
    port = free_port()
    config = tmp_path / "nats.conf"
    config.write_text(
        'authorization { users = [ { user: "svc", password: "pw", permissions: '
        '{ publish: { deny: ["forbidden.>"] } } } ] }\n'
    )
    process = subprocess.Popen(
        [binary, "-a", _HOST, "-p", str(port), "-c", str(config),
         "-js", "-sd", str(tmp_path / "js")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((_HOST, port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the test's nats-server did not start") from None
                time.sleep(0.05)
        yield f"nats://svc:pw@{_HOST}:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def test_a_refused_core_publish_is_reported_not_silenced(restricted_url: str) -> None:
    broker = NatsBroker(restricted_url, stream="refusals", storage="memory")
    await broker.connect()
    failures: list[tuple[str, BaseException]] = []
    three = asyncio.Event()

    def on_error(topic: str, error: BaseException) -> None:
        failures.append((topic, error))
        if len(failures) == 3:
            three.set()

    try:
        fire_and_forget = broker.with_acks("none", on_error=on_error)
        await fire_and_forget.publish("allowed.one", b"1")  # no error comes back for it
        for n in range(3):  # more than once: not "logged once per outage"
            await fire_and_forget.publish("forbidden.Orders", str(n).encode())
        await asyncio.wait_for(three.wait(), 10)
        assert broker.unconfirmed.count == 3
        topic, error = failures[0]
        assert topic == "forbidden.orders"  # as the server names it (lower-cased)
        assert isinstance(error, PublishFailedError) and "permissions violation" in str(error)
        # The connection is still fine: a confirmed publish to an allowed subject works.
        assert (await broker.publish("allowed.two", b"2")).offset is not None
    finally:
        await broker.close()


async def test_a_refused_jetstream_publish_fails_fast_as_permanent(restricted_url: str) -> None:
    """No PubAck comes for a refused JetStream publish, only the server's error: the
    publish fails at its first attempt's timeout (2 s), not at publish_timeout, with an
    error the outbox treats as permanent; the batching publisher likewise."""
    from framework.data.failures import is_permanent_publish_error
    from framework.transport.nats.errors import PublishRefusedError

    broker = NatsBroker(restricted_url, stream="refusals-js", storage="memory",
                        publish_timeout=30.0)  # fmt: skip
    await broker.connect()
    try:
        began = time.monotonic()
        with pytest.raises(PublishRefusedError) as caught:
            await broker.publish("forbidden.js", b"1")
        assert time.monotonic() - began < 10
        assert is_permanent_publish_error(caught.value)
        async with broker.batch_publisher(chunk_size=4) as batch:
            futures = [await batch.submit(s, b"x") for s in ("allowed.a", "forbidden.b")]
            outcomes = await asyncio.wait_for(
                asyncio.gather(*futures, return_exceptions=True), 15
            )
        assert outcomes[0].offset is not None  # type: ignore[union-attr]
        assert isinstance(outcomes[1], PublishRefusedError)
    finally:
        await broker.close()
