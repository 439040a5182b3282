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
