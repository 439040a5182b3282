"""The pytest plugin: fixtures from a user's ``pykratos_app`` and the ``real_brokers`` marker.

Run in a child pytest on a throw-away project, as a user's suite would load it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = '''
from framework import App
from framework.broker import BrokerServer, MemoryBroker, Router
from framework.transport.http import HttpServer, Router as HttpRouter
import pytest

router = Router()
seen = []


@router.subscriber("greetings", group="g")
async def greet(name: str) -> None:
    if name == "boom":
        raise ValueError("cannot greet boom")
    seen.append(name)


@pytest.fixture
def pykratos_app():
    http = HttpServer(port=1)  # never bound: the kit calls the ASGI app directly
    api = HttpRouter()

    @api.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    http.include_router(api)
    broker = MemoryBroker(name="configured")
    return App("plugin-demo", servers=[BrokerServer(broker, [router]), http])
'''

TESTS = '''
import pytest
from conftest import greet


async def test_http(http_client):
    assert (await http_client.get("/hello")).json() == {"hello": "world"}


async def test_broker_records_and_waits(kit, test_broker):
    await kit.publish("greetings", "ada", key="k")
    (received,) = await test_broker.handled(greet)
    assert received.payload == "ada"
    assert [p.key for p in test_broker.published_to("greetings")] == [b"k"]
    assert not kit.broker.real


@pytest.mark.real_brokers
async def test_marker_keeps_the_real_broker(kit):
    assert kit.broker.real
    await kit.publish("greetings", "bob")
    await kit.broker.handled(greet)


async def test_failure_surfaces(kit):
    await kit.publish("greetings", "boom")
    await kit.broker.handled(greet)
'''


def _run(project: Path) -> subprocess.CompletedProcess[str]:
    plugin = [] if any(ep.name == "pykratos" for ep in entry_points(group="pytest11")) else [
        "-p", "framework.testing.plugin"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin,
         "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_fixtures_marker_and_failure(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (tmp_path / "test_demo.py").write_text(textwrap.dedent(TESTS))
    done = _run(tmp_path)
    out = done.stdout + done.stderr
    assert "1 failed, 3 passed" in out, out[-3000:]
    assert "HandlerFailed" in out and "cannot greet boom" in out, out[-3000:]
