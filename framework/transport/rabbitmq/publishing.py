"""Confirmed publishing that survives a reconnect.

Every publish goes out on a channel in confirm mode and returns only once the broker acked
it. When the connection drops mid-publish the robust connection reconnects in the
background; the publish waits for the channel to be restored and sends again, until
``timeout``. A message is never reported as published without a broker ack, so a retried
publish may reach the queue twice (at-least-once), never zero times silently.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aio_pika.abc
from aiormq.abc import ConfirmationFrameType
from aiormq.exceptions import (
    AMQPConnectionError,
    ChannelAccessRefused,
    ChannelClosed,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    PublishError,
)
from pamqp import commands as spec

from framework.transport.rabbitmq.errors import (
    MessageTooLargeError,
    PublishFailedError,
    PublishTimeoutError,
    TopologyError,
    UnroutableError,
)

__all__ = ["ConfirmedPublisher"]

# Errors the broker will answer the same way on every retry.
_FATAL = (ChannelNotFoundEntity, ChannelAccessRefused, ChannelPreconditionFailed)
# Errors of a connection or channel that went away under the publish: retry once restored.
_TRANSIENT = (AMQPConnectionError, ChannelClosed, ChannelInvalidStateError, ConnectionError)


class ConfirmedPublisher:
    """Publishes on one robust confirm-mode channel; see the module docstring."""

    def __init__(self, channel: aio_pika.abc.AbstractRobustChannel, *, timeout: float) -> None:
        self._channel = channel
        self._timeout = timeout

    async def publish(
        self,
        *,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: spec.Basic.Properties,
        mandatory: bool,
    ) -> None:
        """Publish and wait for the broker's confirm, retrying across reconnects.

        Raises:
            UnroutableError: ``mandatory`` and no queue matched (the broker returned it).
            TopologyError: the exchange does not exist or may not be written to.
            MessageTooLargeError: the body is larger than the broker's ``max_message_size``.
            PublishTimeoutError: not confirmed within the timeout (broker down, nacks); a
                503 ``BROKER_UNAVAILABLE`` error.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        backoff = 0.05
        last_error: BaseException | None = None
        where = f"exchange {exchange!r} routing key {routing_key!r}"
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    confirmation = await self._send(
                        exchange, routing_key, body, properties, mandatory
                    )
            except TimeoutError as exc:
                raise PublishTimeoutError(
                    f"publish to {where} not confirmed within {self._timeout:g}s"
                    + (f" (last error: {last_error})" if last_error else ""),
                    topic=routing_key,
                    timeout=self._timeout,
                ) from exc
            except PublishError as exc:
                raise UnroutableError(
                    f"publish to {where} matched no queue (mandatory): no subscriber has "
                    f"bound a queue for it yet"
                ) from exc
            except _FATAL as exc:
                # The broker closes the whole channel, failing every publish in flight on
                # it. Its reason names the culprit ("no exchange 'x' in vhost '/'"): only
                # that publish fails, the others go again on the restored channel.
                if f"'{exchange}'" in str(exc):
                    raise TopologyError(f"publish to {where} refused by the broker: {exc}") from exc
                # "message size 200 is larger than configured max size 100": the size is
                # this body's only if this publish is the culprit.
                if f"message size {len(body)} is larger" in str(exc):
                    raise MessageTooLargeError(
                        f"publish to {where} refused by the broker: {exc}"
                    ) from exc
                last_error = exc
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we are being cancelled: not a channel loss
                last_error = exc  # aiormq cancels pending confirms when its channel closes
            except _TRANSIENT as exc:
                last_error = exc
            else:
                if isinstance(confirmation, spec.Basic.Ack):
                    return
                last_error = PublishFailedError(f"broker nacked the publish: {confirmation!r}")
            pause = min(backoff, max(deadline - loop.time(), 0.0))
            await asyncio.sleep(pause)
            backoff = min(backoff * 2, 1.0)

    async def _send(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: spec.Basic.Properties,
        mandatory: bool,
    ) -> ConfirmationFrameType | None:
        await self._channel.ready()  # waits while the robust connection reconnects
        raw = await self._channel.get_underlay_channel()
        return await raw.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=properties,
            mandatory=mandatory,
            **_no_drain_wait(raw),
        )


def _no_drain_wait(raw: object) -> dict[str, Any]:
    """``wait=False`` where aiormq's ``basic_publish`` takes it: do not wait, under the
    channel's lock, for each frame to be written out before the next publish may queue its
    own. The confirm awaited after it only comes once the frame was written anyway, and with
    many publishes in flight (the batching publisher) waiting for each write serialises
    them. Older aiormq versions without the argument keep their behaviour."""
    cls = type(raw)
    accepts = _ACCEPTS_WAIT.get(cls)
    if accepts is None:
        method = getattr(cls, "basic_publish", None)
        accepts = method is not None and "wait" in inspect.signature(method).parameters
        _ACCEPTS_WAIT[cls] = accepts
    return _NO_WAIT if accepts else {}


_ACCEPTS_WAIT: dict[type, bool] = {}
_NO_WAIT: dict[str, Any] = {"wait": False}
