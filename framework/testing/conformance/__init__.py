"""The broker conformance suite: every messaging promise, one test each, for any broker.

The promises (groups, ordering, retries, dead letters, at-least-once delivery, ...) are
listed once in :data:`PROMISES`; :class:`BrokerConformance` holds one test per promise,
written against the :class:`~framework.broker.Broker` contract, the
:class:`~framework.broker.Router` subscriber API, :class:`~framework.broker.BrokerServer` and
the retry / dead-letter policy. The README's broker x promise table is generated from the
same list and the brokers' declarations (:func:`promise_table`). Modelled on FastStream's
``tests/brokers/base``. Needs ``pytest`` and ``pytest-asyncio`` in ``asyncio_mode = "auto"``
(``pip install pykratos[testing]``); the framework core never imports this package.

Running it against a broker (yours, or one of the framework's) is one small test module::

    # tests/conformance/test_mybroker.py
    import pytest
    from framework.testing.conformance import BrokerConformance
    from mypackage import MyBroker

    class TestMyBroker(BrokerConformance):
        broker_name = "mybroker"
        # promise id -> why the broker cannot keep it: a strict xfail with that reason
        expected_failures = {"delay": "no delayed delivery in protocol v1"}
        # promise id -> why it does not apply: skipped (``delay``: checks the refusal)
        not_applicable = {}

        @pytest.fixture
        def make_broker(self):
            # a new, unconnected broker at each call, all on the same server
            return lambda name: MyBroker(url="...", client_name=name)

        async def drop_connections(self) -> None:
            ...  # make the server close this test's client connections

The tests come in one class per promise group (:class:`DeliveryPromises`,
:class:`FailurePromises`, :class:`StopPromises`, :class:`PublishPromises`,
:class:`TagPromises`, :class:`ProducerPromises`, :class:`BatchingPromises`), as
FastStream's ``tests/brokers/base`` does; :class:`BrokerConformance` combines them, and a
broker in the making may subclass one group alone.

Optional hooks: :meth:`~BrokerConformance.prepare_topic` (create a topic with N partitions
before use), :meth:`~BrokerConformance.drop_connections` (for ``reconnect`` and
``publish_confirm``; :class:`TcpProxy` does it for a server without such a command),
:meth:`~BrokerConformance.crash` (end a consumer mid-work),
:meth:`~BrokerConformance.dead_letter_options` (subscriber options that consume a
dead-letter destination), and :meth:`~BrokerConformance.refused_message` (a message the
broker refuses at publish, for ``batch_publish``; by default the empty topic). In this
repository, add the module under ``tests/conformance/``
and regenerate the README table with
``PYKRATOS_UPDATE_README=1 python -m pytest tests/conformance/test_readme_table.py``.
"""

from framework.testing.conformance.base import ConformanceBase
from framework.testing.conformance.batching import BatchingPromises
from framework.testing.conformance.delivery import DeliveryPromises
from framework.testing.conformance.failures import FailurePromises
from framework.testing.conformance.harness import BrokerFactory, Harness, Inbox
from framework.testing.conformance.memory import MemoryBrokerView
from framework.testing.conformance.producing import ProducerPromises
from framework.testing.conformance.promises import PROMISE_IDS, PROMISES, Promise, promise
from framework.testing.conformance.proxy import TcpProxy
from framework.testing.conformance.publishing import PublishPromises
from framework.testing.conformance.scheduling import SchedulingPromises
from framework.testing.conformance.stopping import StopPromises
from framework.testing.conformance.suite import NOT_UTF8, BrokerConformance, promise_tests
from framework.testing.conformance.table import BrokerColumn, promise_table
from framework.testing.conformance.tags import TagPromises

__all__ = [
    "NOT_UTF8",
    "PROMISES",
    "PROMISE_IDS",
    "BatchingPromises",
    "BrokerColumn",
    "BrokerConformance",
    "BrokerFactory",
    "ConformanceBase",
    "DeliveryPromises",
    "FailurePromises",
    "Harness",
    "Inbox",
    "MemoryBrokerView",
    "ProducerPromises",
    "Promise",
    "PublishPromises",
    "SchedulingPromises",
    "StopPromises",
    "TagPromises",
    "TcpProxy",
    "promise",
    "promise_table",
    "promise_tests",
]
