"""Redis' batching publisher: one pipelined round trip of ``XADD`` per chunk.

:class:`RedisBatchingPublisher` is :class:`framework.broker.batching.BatchingPublisher` with
Redis' send path: the ``XADD`` commands of a chunk go out in one pipeline (no ``MULTI``: one
write, one read, Redis runs them in order), and each entry id answers its own message. A
command Redis refuses (a key holding another type, a bad trimming argument) fails that
message alone with :class:`~framework.transport.redis.errors.PublishFailedError`.

A chunk that meets a dropped connection is sent again until ``publish_timeout`` (then its
messages fail with :class:`~framework.transport.redis.errors.PublishTimeoutError`): if the
first attempt had reached Redis, those entries are in the stream twice (at-least-once, as
with a retried ``publish``). Chunks go one after another on one connection, so the messages
of a key keep their submit order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from framework.broker import batching
from framework.broker.batching import PendingMessage
from framework.broker.broker import PublishResult
from framework.transport.redis.entries import encode_fields
from framework.transport.redis.errors import PublishFailedError, PublishTimeoutError
from framework.transport.redis.options import RedisOptions
from framework.transport.redis.publishing import RETRYABLE, trim_arguments

__all__ = ["RedisBatchingPublisher"]


class RedisBatchingPublisher(batching.BatchingPublisher):
    """Pipelines ``XADD`` per chunk (see the module docstring).

    Args:
        client: the broker's Redis client.
        options: the broker's options (key prefix, trimming, ``publish_timeout``).
        **kwargs: ``chunk_size``, ``flush_interval``, ``max_pending``, ``close_timeout``
            (see :class:`framework.broker.batching.BatchingPublisher`).
    """

    def __init__(self, client: Redis, options: RedisOptions, **kwargs: Any) -> None:
        kwargs.setdefault("name", "redis-batch-publisher")
        super().__init__(**kwargs)
        self._client = client
        self._options = options

    async def send_chunk(self, chunk: list[PendingMessage]) -> None:
        options = self._options
        prefix = options.key_prefix
        deadline = time.monotonic() + options.publish_timeout
        pause = 0.05
        while True:
            trim = trim_arguments(options)  # MINID is relative to now: per attempt
            pipe = self._client.pipeline(transaction=False)
            for item in chunk:
                fields: Mapping[Any, bytes] = encode_fields(item.body, item.key, item.headers)
                pipe.xadd(prefix + item.topic, {**fields}, **trim)
            try:
                replies = await pipe.execute(raise_on_error=False)
            except RETRYABLE as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.reject(chunk, self._timed_out(chunk, exc))
                    return
                await asyncio.sleep(min(pause, left))
                pause = min(pause * 2, 1.0)
                continue
            break
        for item, reply in zip(chunk, replies, strict=True):
            if isinstance(reply, ResponseError):
                error = PublishFailedError(
                    f"XADD to {prefix + item.topic!r} refused by Redis: {reply}"
                )
                error.__cause__ = reply
                self.reject((item,), error)
            elif isinstance(reply, Exception):
                self.reject((item,), reply)
            else:
                entry_id = reply.decode() if isinstance(reply, bytes) else str(reply)
                self.resolve(item, PublishResult(topic=item.topic, message_id=entry_id))

    def _timed_out(self, chunk: list[PendingMessage], exc: BaseException) -> PublishTimeoutError:
        topic = chunk[0].topic
        timeout = self._options.publish_timeout
        error = PublishTimeoutError(
            f"XADD of {len(chunk)} message(s) (first to {topic!r}): Redis unreachable for "
            f"{timeout:g}s ({exc!r})",
            topic=topic,
            timeout=timeout,
        )
        error.__cause__ = exc
        return error
