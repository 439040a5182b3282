"""Delayed and scheduled entries: a sorted-set schedule moved into the streams when due.

Redis Streams cannot hold an entry back, so ``publish(..., delay=...)`` /
``publish(..., deliver_at=...)`` writes the message to a schedule instead:

* ``<key_prefix>pykratos:schedule`` is a sorted set whose members are schedule ids and whose
  scores are the due times (Unix epoch milliseconds);
* ``<key_prefix>pykratos:schedule:<id>`` is a hash holding the entry's fields exactly as
  ``XADD`` would write them (binary-safe) plus the destination stream;
* both are written in one ``MULTI``/``EXEC``, then a ``PUBLISH`` on
  ``<key_prefix>pykratos:schedule:wake`` carrying the due time wakes the movers.

A **mover** (:class:`ScheduleMover`, run by a :class:`~framework.transport.redis.RedisBroker`
as its ``delay_relay`` option says) runs :data:`MOVE_SCRIPT`: a Lua script that takes the due
members (``ZRANGEBYSCORE -inf now``), ``XADD``\\ s each one's fields to its stream (with the
broker's trimming), deletes its hash and ``ZREM``\\ s it, all atomically; it returns the next
due time. The mover then waits on the wake channel until that time (or until a publish
announces an earlier one), so it never polls in a loop; ``schedule_idle`` bounds the wait,
covering a wake lost while its pub/sub connection was down. Several processes may run movers
against one Redis: a script runs alone, so each entry is moved exactly once.

Nothing is lost if no mover runs: the schedule waits in Redis until one does. The keys the
script touches are computed inside it, so on Redis Cluster every key of a broker must share
one slot (a ``key_prefix`` with a hash tag, e.g. ``"{orders}:"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from framework.broker.schedule import due_ms
from framework.transport.redis.errors import PublishFailedError, PublishTimeoutError
from framework.transport.redis.options import RedisOptions
from framework.transport.redis.publishing import trim_arguments

__all__ = ["MOVE_SCRIPT", "STREAM_FIELD", "ScheduleKeys", "ScheduleMover", "schedule_entry"]

log = logging.getLogger("pykratos.redis")

_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)
#: Hash field naming the destination stream (message fields are body, key and ``h:*``).
STREAM_FIELD = b"pykratos:stream"
#: Entries moved per script run: bounds how long one run blocks Redis.
_BATCH = 200

#: KEYS[1] the schedule; ARGV[1] now (ms), ARGV[2] batch size, ARGV[3] the hash-key prefix,
#: ARGV[4..] the XADD trimming arguments. Returns {moved, next due score or false}.
MOVE_SCRIPT = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  local hkey = ARGV[3] .. id
  local flat = redis.call('HGETALL', hkey)
  local stream = false
  local args = {}
  for i = 1, #flat, 2 do
    if flat[i] == 'pykratos:stream' then
      stream = flat[i + 1]
    else
      args[#args + 1] = flat[i]
      args[#args + 1] = flat[i + 1]
    end
  end
  if stream then
    local command = {'XADD', stream}
    for i = 4, #ARGV do command[#command + 1] = ARGV[i] end
    command[#command + 1] = '*'
    for _, v in ipairs(args) do command[#command + 1] = v end
    redis.call(unpack(command))
  end
  redis.call('DEL', hkey)
  redis.call('ZREM', KEYS[1], id)
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head == 0 then
  return {#due, false}
end
return {#due, head[2]}
"""


class ScheduleKeys:
    """The Redis keys of one broker's schedule (see the module docstring)."""

    def __init__(self, key_prefix: str) -> None:
        self.schedule = f"{key_prefix}pykratos:schedule"
        self.entry_prefix = f"{self.schedule}:"
        self.wake = f"{self.schedule}:wake"

    def entry(self, schedule_id: str) -> str:
        """The hash of one scheduled entry."""
        return self.entry_prefix + schedule_id


async def schedule_entry(
    client: Redis,
    keys: ScheduleKeys,
    options: RedisOptions,
    stream: str,
    fields: Mapping[bytes, bytes],
    due: float,
) -> str:
    """Write one entry to the schedule, due at ``due`` (epoch seconds); return its schedule
    id once Redis executed the transaction, retrying a lost connection until
    ``publish_timeout``.

    Raises:
        PublishFailedError: Redis refused the transaction.
        PublishTimeoutError: Redis stayed unreachable for ``publish_timeout`` seconds.
    """
    schedule_id = uuid.uuid4().hex
    due_at_ms = due_ms(due)
    mapping: dict[bytes, bytes] = {**fields, STREAM_FIELD: stream.encode()}
    deadline = time.monotonic() + options.publish_timeout
    pause = 0.05
    while True:
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(keys.entry(schedule_id), mapping=mapping)  # type: ignore[arg-type]
                pipe.zadd(keys.schedule, {schedule_id: due_at_ms})
                pipe.publish(keys.wake, str(due_at_ms))
                await pipe.execute()
        except ResponseError as exc:
            raise PublishFailedError(
                f"scheduling an entry for {stream!r} refused by Redis: {exc}"
            ) from exc
        except _RETRYABLE as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PublishTimeoutError(
                    f"scheduling an entry for {stream!r}: Redis unreachable for "
                    f"{options.publish_timeout:g}s ({exc!r})",
                    topic=stream,
                    timeout=options.publish_timeout,
                ) from exc
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)
            continue
        return schedule_id


def _trim_argv(options: RedisOptions) -> list[str]:
    trim = trim_arguments(options)
    approximate = ["~"] if trim.get("approximate") else []
    if "maxlen" in trim:
        return ["MAXLEN", *approximate, str(trim["maxlen"])]
    if "minid" in trim:
        return ["MINID", *approximate, str(trim["minid"])]
    return []


class ScheduleMover:
    """Moves due entries of the schedule into their streams (see the module docstring).

    Args:
        client: the broker's client (its pool gives the script and the pub/sub connection).
        options: the broker's options (``key_prefix``, trimming, ``schedule_idle``,
            ``reconnect_interval``).
    """

    def __init__(self, client: Redis, options: RedisOptions) -> None:
        self._client = client
        self._options = options
        self._keys = ScheduleKeys(options.key_prefix)
        self._script = client.register_script(MOVE_SCRIPT)
        self._task: asyncio.Task[None] | None = None
        self._next_due: float | None = None  # epoch seconds the mover sleeps until
        #: entries moved since start (for tests and health).
        self.moved = 0

    @property
    def running(self) -> bool:
        """Whether the mover's task is running."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the mover task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pykratos-redis-schedule")

    async def stop(self) -> None:
        """Cancel the mover and wait for it; a move in progress is atomic on the server."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def move_due(self) -> float | None:
        """Move every due entry now; return the next due time (epoch seconds) or ``None``."""
        while True:
            moved, head = await self._script(
                keys=[self._keys.schedule],
                args=[
                    int(time.time() * 1000),
                    _BATCH,
                    self._keys.entry_prefix,
                    *_trim_argv(self._options),
                ],
            )
            self.moved += int(moved)
            if int(moved) < _BATCH:
                return None if head is None else float(head) / 1000

    async def _run(self) -> None:
        pubsub: PubSub | None = None
        try:
            while True:
                try:
                    if pubsub is None:
                        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                        await pubsub.subscribe(self._keys.wake)
                    self._next_due = await self.move_due()
                    await self._sleep(pubsub)
                except (RedisError, OSError) as exc:
                    log.warning(
                        "redis schedule mover: %r; retrying in %gs",
                        exc,
                        self._options.reconnect_interval,
                    )
                    if pubsub is not None:
                        with contextlib.suppress(Exception):
                            await pubsub.aclose()  # type: ignore[no-untyped-call]
                        pubsub = None
                    await asyncio.sleep(self._options.reconnect_interval)
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _sleep(self, pubsub: PubSub) -> None:
        """Wait on the wake channel until the next due time, a publish announcing an earlier
        one, or ``schedule_idle`` seconds."""
        deadline = time.time() + self._options.schedule_idle
        if self._next_due is not None:
            deadline = min(deadline, self._next_due)
        while True:
            left = deadline - time.time()
            if left <= 0:
                return
            message: dict[str, Any] | None = await pubsub.get_message(timeout=left)
            if message is None:
                continue
            try:
                announced = int(message["data"]) / 1000
            except (KeyError, TypeError, ValueError):
                return  # not a due time: look at the schedule anyway
            if announced < deadline:
                return
