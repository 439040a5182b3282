"""The in-process test kit: the whole App in a test, a client per transport, a test broker.

* :class:`TestApp` starts an App in-process: HTTP through ``httpx.ASGITransport`` (no socket),
  gRPC and WebSocket on loopback port 0, brokers taken over by a :class:`TestBroker`.
* :class:`TestBroker` puts every broker server on the memory broker's semantics without
  touching the service's code or config, records what was published and received, waits for
  "subscriber handled N messages", and raises handler failures in the test.
* :func:`override` / :class:`Overrides`: a container provider swapped for a fake, undone after.

The pytest plugin (:mod:`framework.testing.plugin`, registered through the ``pytest11`` entry
point) adds fixtures and the ``real_brokers`` marker; this package itself does not import pytest.

:mod:`framework.testing.conformance` is the broker conformance suite: the messaging promises
written once, as pytest tests, against the :class:`~framework.broker.Broker` contract, so that
every broker (the framework's own and third-party ones) runs the same tests. It needs ``pytest``
and ``pytest-asyncio`` (``pip install pykratos[testing]``); the framework core never imports it.
"""

from framework.testing.app import TestApp
from framework.testing.broker import HandlerFailed, Published, Received, TestBroker
from framework.testing.overrides import Overrides, override
from framework.testing.websocket import WsClient

__all__ = [
    "HandlerFailed",
    "Overrides",
    "Published",
    "Received",
    "TestApp",
    "TestBroker",
    "WsClient",
    "override",
]
