"""``XADD`` with the broker's trimming policy, retried across a lost connection.

The entry id that ``XADD`` returns is Redis' confirmation: the entry is in the stream (in
memory, and in the AOF/RDB as the server's persistence is configured). A publish that meets a
dropped connection is sent again until ``publish_timeout``; if the first attempt had reached
Redis, the stream then holds the message twice (at-least-once, as with any broker's
retried publish).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from framework.transport.redis.errors import PublishFailedError, PublishTimeoutError
from framework.transport.redis.options import RedisOptions

__all__ = ["RETRYABLE", "StreamPublisher", "trim_arguments"]

#: Errors of a lost or slow connection: the publish is sent again until ``publish_timeout``.
RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def trim_arguments(
    options: RedisOptions, maxlen: int | None = None, minid_age: float | None = None
) -> dict[str, Any]:
    """``XADD`` keyword arguments of the trimming policy: the call's own ``maxlen`` or
    ``minid_age`` if given, else the broker's (``MINID`` is now minus the age)."""
    if maxlen is not None and minid_age is not None:
        raise ValueError("maxlen and minid_age are exclusive: XADD trims by one strategy")
    if maxlen is None and minid_age is None:
        maxlen, minid_age = options.maxlen, options.minid_age
    if maxlen is not None:
        return {"maxlen": maxlen, "approximate": options.approximate_trim}
    if minid_age is not None:
        minid = f"{int((time.time() - minid_age) * 1000)}-0"
        return {"minid": minid, "approximate": options.approximate_trim}
    return {}


class StreamPublisher:
    """Appends entries to streams (see the module docstring)."""

    def __init__(self, client: Redis, options: RedisOptions) -> None:
        self._client = client
        self._options = options

    async def xadd(
        self,
        stream: str,
        fields: Mapping[Any, bytes],
        *,
        maxlen: int | None = None,
        minid_age: float | None = None,
    ) -> str:
        """Append one entry and return its id.

        Raises:
            PublishFailedError: Redis refused the command.
            PublishTimeoutError: Redis stayed unreachable for ``publish_timeout`` seconds
                (a 503 ``BROKER_UNAVAILABLE`` error).
        """
        trim = trim_arguments(self._options, maxlen, minid_age)
        deadline = time.monotonic() + self._options.publish_timeout
        pause = 0.05
        while True:
            try:
                entry_id = await self._client.xadd(stream, {**fields}, **trim)
            except ResponseError as exc:
                raise PublishFailedError(f"XADD to {stream!r} refused by Redis: {exc}") from exc
            except RETRYABLE as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PublishTimeoutError(
                        f"XADD to {stream!r}: Redis unreachable for "
                        f"{self._options.publish_timeout:g}s ({exc!r})",
                        topic=stream,
                        timeout=self._options.publish_timeout,
                    ) from exc
                await asyncio.sleep(min(pause, left))
                pause = min(pause * 2, 1.0)
                continue
            return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
