"""Which JetStream stream holds a subject, and creating or extending the broker's own.

JetStream stores what is published to a subject only when a stream captures it. With
``create_streams`` on, the broker keeps one stream of its own (``stream``, ``"pykratos"`` by
default) and adds to it every subject it publishes to or consumes that no stream captures
yet: a new subject that covers some of the stream's subjects (``orders.*`` over
``orders.created``) replaces them, since JetStream refuses overlapping subjects. A subject
that another stream captures only in part is an error, as is any missing stream when
``create_streams`` is off (then streams are the operator's to create).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from framework.transport.nats.errors import StreamError
from framework.transport.nats.subjects import covers

__all__ = ["Streams"]


class Streams:
    """Finds (and with ``create`` makes) the stream that captures a subject."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        own: str,
        create: bool,
        storage: Literal["file", "memory"],
        max_age: float,
    ) -> None:
        self._js = js
        self.own = own
        self.create = create
        self._storage = StorageType.FILE if storage == "file" else StorageType.MEMORY
        self._max_age = max_age
        self._known: dict[str, str] = {}  # subject -> stream
        self._lock = asyncio.Lock()

    async def stream_for(self, subject: str) -> str:
        """The name of the stream that captures ``subject`` (made or extended if allowed).

        Raises:
            StreamError: none captures it and ``create`` is off, or another stream
                captures only part of it.
        """
        known = self._known.get(subject)
        if known is not None:
            return known
        async with self._lock:
            name = await self._resolve(subject)
        self._known[subject] = name
        return name

    def forget(self, subject: str) -> None:
        """Drop what is known of ``subject`` (its stream was deleted meanwhile?)."""
        self._known.pop(subject, None)

    async def _resolve(self, subject: str) -> str:
        try:
            name: str | None = await self._js.find_stream_name_by_subject(subject)
        except NotFoundError:
            name = None
        if name is not None:
            info = await self._js.stream_info(name)
            if any(covers(s, subject) for s in info.config.subjects or ()):
                return name
            if name != self.own or not self.create:
                raise StreamError(
                    f"stream {name!r} captures only part of {subject!r} "
                    f"(its subjects: {info.config.subjects}); widen it or use another subject"
                )
        elif not self.create:
            raise StreamError(
                f"no JetStream stream captures {subject!r}: create one (nats stream add) or "
                f"turn create_streams on"
            )
        await self._extend_own(subject)
        return self.own

    async def _extend_own(self, subject: str) -> None:
        error: Exception | None = None
        for _ in range(3):  # another process may create or extend it at the same time
            try:
                info = await self._js.stream_info(self.own)
            except NotFoundError:
                try:
                    await self._js.add_stream(
                        StreamConfig(
                            name=self.own,
                            subjects=[subject],
                            storage=self._storage,
                            max_age=self._max_age or None,
                        )
                    )
                    return
                except BadRequestError as exc:
                    error = exc
                    continue
            config = info.config
            subjects = [s for s in config.subjects or () if not covers(subject, s)]
            config.subjects = [*subjects, subject]
            try:
                await self._js.update_stream(config)
                return
            except BadRequestError as exc:
                error = exc
        raise StreamError(f"cannot add {subject!r} to stream {self.own!r}: {error}")
