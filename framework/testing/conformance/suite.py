""":class:`BrokerConformance`: one test per promise of :data:`PROMISES`, for any broker.

Written once against the :class:`~framework.broker.Broker` contract, the
:class:`~framework.broker.Router` subscriber API, :class:`~framework.broker.BrokerServer`
and the processor's retry / dead-letter policy; a broker's test module subclasses it and
supplies a broker factory (see the package docstring). Like FastStream's
``tests/brokers/base``, the tests come in one class per promise group; this class combines
them all.
"""

from __future__ import annotations

from framework.testing.conformance.base import NOT_UTF8, ConformanceBase
from framework.testing.conformance.batching import BatchingPromises
from framework.testing.conformance.delivery import DeliveryPromises
from framework.testing.conformance.failures import FailurePromises
from framework.testing.conformance.producing import ProducerPromises
from framework.testing.conformance.promises import PROMISE_IDS
from framework.testing.conformance.publishing import PublishPromises
from framework.testing.conformance.scheduling import SchedulingPromises
from framework.testing.conformance.stopping import StopPromises
from framework.testing.conformance.tags import TagPromises

__all__ = ["NOT_UTF8", "BrokerConformance", "promise_tests"]


class BrokerConformance(
    DeliveryPromises,
    FailurePromises,
    StopPromises,
    PublishPromises,
    TagPromises,
    SchedulingPromises,
    ProducerPromises,
    BatchingPromises,
):
    """Every promise: subclass it once per broker (see :class:`ConformanceBase` for the
    declarations, the ``make_broker`` fixture and the hooks)."""


def promise_tests(cls: type[ConformanceBase]) -> set[str]:
    """The promise ids ``cls`` has a test for (``test_<id>`` methods, inherited included)."""
    return {name.removeprefix("test_") for name in dir(cls) if name.startswith("test_")}


def _check_one_test_per_promise() -> None:
    tests = promise_tests(BrokerConformance)
    if tests != PROMISE_IDS:
        raise AssertionError(
            f"tests and promises differ: no test for {sorted(PROMISE_IDS - tests)}, "
            f"no promise for {sorted(tests - PROMISE_IDS)}"
        )


_check_one_test_per_promise()
