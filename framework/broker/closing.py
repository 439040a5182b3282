"""What a broker's ``close`` does with the subscriptions still running: stop them at once.

``Broker.close`` stops remaining subscriptions without waiting for their handlers (a clean
shutdown stops them first, through the server, with its drain timeout).
"""

from __future__ import annotations

from collections.abc import MutableSequence
from typing import TypeVar

from framework.broker.broker import Subscription

__all__ = ["stop_subscriptions_now"]

S = TypeVar("S", bound=Subscription)


async def stop_subscriptions_now(subscriptions: MutableSequence[S]) -> None:
    """``stop(0)`` each of ``subscriptions`` in turn, then empty the list.

    Goes over a copy: a subscription may remove itself from the list as it stops (its
    ``on_stopped`` callback).
    """
    for subscription in list(subscriptions):
        await subscription.stop(0)
    subscriptions.clear()
