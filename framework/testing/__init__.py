"""Test kits shipped with the framework.

:mod:`framework.testing.conformance` is the broker conformance suite: the messaging promises
written once, as pytest tests, against the :class:`~framework.broker.Broker`
contract, so that every broker (the framework's own and third-party ones) runs the same
tests. It needs ``pytest`` and ``pytest-asyncio`` (``pip install pykratos[testing]``); the
framework core never imports it.
"""

__all__: list[str] = []
