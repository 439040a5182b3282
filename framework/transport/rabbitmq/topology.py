"""Declaring what a subscription and a delayed publish need on the broker.

Per subscription (all durable unless the subscriber is a broadcast one, whose queues are
exclusive to this connection and vanish with it):

* the exchange (``exchange_type``) and the work queue bound to it with each binding key;
* for a subscriber with ``tags`` instead: a headers exchange (``tag_exchange``) bound to the
  exchange with each binding key, and the work queue bound to it once per tag, matching the
  ``pykratos-tag`` header the broker sets from ``x-tag``. Messages of other tags (or none)
  never reach the queue, and an untagged subscriber's bindings stay as they were;
* one retry queue per retry delay, ``<queue>.retry.<ms>ms``: a queue-wide TTL
  (``x-message-ttl``) then dead-lettering through the default exchange back to the work
  queue. One queue per delay keeps every message in it expiring in FIFO order, which a
  single queue with per-message TTLs would not (RabbitMQ only expires the head);
* the dead-letter exchange (direct) and the ``<topic>.dlq`` queue, bound to it with the
  dead-letter topic as key.

Delayed publishing uses a headers exchange and one bucket queue per (target exchange,
delay): the message keeps its routing key, waits the bucket's TTL and is dead-lettered to
the target exchange, so it is routed exactly as if published then.
"""

from __future__ import annotations

from typing import Any

import aio_pika.abc
from aio_pika import ExchangeType
from aiormq.exceptions import AMQPError

from framework.transport.rabbitmq.errors import TopologyError
from framework.transport.rabbitmq.headers import DELAY_EXCHANGE_ARG, DELAY_MS_ARG, TAG_ARG
from framework.transport.rabbitmq.options import SubscriberTopology

__all__ = ["declare_delay_bucket", "declare_retry_queue", "declare_subscription", "delay_bucket"]


async def declare_subscription(
    channel: aio_pika.abc.AbstractRobustChannel,
    topology: SubscriberTopology,
    retry_delays_ms: set[int],
    *,
    robust: bool = True,
) -> list[str]:
    """Declare the exchange, work queue, bindings, retry queues and DLQ; return the queue
    names declared (work queue first).

    ``robust``: the channel re-declares them after a reconnect. A declaration repeated on
    the same channel (re-subscribing a cancelled consumer) passes ``False``, so that the
    channel does not collect one more copy of each every time.
    """
    queues = [topology.queue]
    try:
        exchange = await channel.declare_exchange(
            topology.exchange, ExchangeType(topology.exchange_type), durable=True, robust=robust
        )
        queue = await channel.declare_queue(
            topology.queue,
            durable=not topology.broadcast,
            exclusive=topology.broadcast,
            auto_delete=topology.broadcast,
            arguments=dict(topology.queue_arguments) or None,
            robust=robust,
        )
        tag_exchange = topology.tag_exchange
        if tag_exchange is None:
            for key in topology.binding_keys:
                await queue.bind(exchange, routing_key=key, robust=robust)
        else:
            tagged = await channel.declare_exchange(
                tag_exchange, ExchangeType.HEADERS, durable=True, robust=robust
            )
            for key in topology.binding_keys:
                await tagged.bind(exchange, routing_key=key, robust=robust)
            for tag in topology.tags:
                await queue.bind(
                    tagged,
                    routing_key="",
                    arguments={"x-match": "all", TAG_ARG: tag},
                    robust=robust,
                )
        for delay_ms in sorted(retry_delays_ms):
            queues.append(await declare_retry_queue(channel, topology, delay_ms, robust=robust))
        if topology.dlq is not None:
            dlx = await channel.declare_exchange(
                topology.dead_letter_exchange, ExchangeType.DIRECT, durable=True, robust=robust
            )
            dlq = await channel.declare_queue(topology.dlq, durable=True, robust=robust)
            await dlq.bind(dlx, routing_key=topology.dlq_routing_key, robust=robust)
            queues.append(topology.dlq)
    except (AMQPError, ValueError) as exc:  # ValueError: a name pamqp refuses to encode
        raise TopologyError(
            f"cannot declare the topology of queue {topology.queue!r} on exchange "
            f"{topology.exchange!r} ({topology.exchange_type}): {exc}. An exchange or queue "
            f"of that name probably exists with another type or other arguments."
        ) from exc
    return queues


async def declare_retry_queue(
    channel: aio_pika.abc.AbstractRobustChannel,
    topology: SubscriberTopology,
    delay_ms: int,
    *,
    robust: bool = True,
) -> str:
    """Declare the TTL queue holding ``topology.queue``'s retries for ``delay_ms``."""
    name = topology.retry_queue(delay_ms)
    await channel.declare_queue(
        name,
        durable=not topology.broadcast,
        exclusive=topology.broadcast,
        arguments={
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": topology.queue,
        },
        robust=robust,
    )
    return name


def delay_bucket(delay_exchange: str, target_exchange: str, delay_ms: int) -> str:
    """Name of the bucket queue delaying messages for ``target_exchange`` by ``delay_ms``."""
    return f"{delay_exchange}.{target_exchange}.{delay_ms}ms"


async def declare_delay_bucket(
    channel: aio_pika.abc.AbstractRobustChannel,
    *,
    delay_exchange: str,
    target_exchange: str,
    delay_ms: int,
    expires_ms: int,
) -> str:
    """Declare (or renew the lease of) a delay bucket; ``expires_ms`` must exceed
    ``delay_ms`` so the bucket outlives the last message put in it."""
    name = delay_bucket(delay_exchange, target_exchange, delay_ms)
    arguments: dict[str, Any] = {
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": target_exchange,
        "x-expires": expires_ms,
    }
    try:
        exchange = await channel.declare_exchange(
            delay_exchange, ExchangeType.HEADERS, durable=True, robust=False
        )
        queue = await channel.declare_queue(name, durable=True, arguments=arguments, robust=False)
        await queue.bind(
            exchange,
            routing_key="",
            arguments={
                "x-match": "all",
                DELAY_MS_ARG: str(delay_ms),
                DELAY_EXCHANGE_ARG: target_exchange,
            },
            robust=False,
        )
    except AMQPError as exc:
        raise TopologyError(f"cannot declare delay bucket {name!r}: {exc}") from exc
    return name
