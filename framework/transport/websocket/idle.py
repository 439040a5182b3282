"""Idle timeout: close a session that has sent nothing for a while.

The reader stamps ``session.last_seen`` with the loop clock on every message; keepalive pongs
do not count, so a connected but silent client is still closed.
"""

from __future__ import annotations

import asyncio
import logging

from framework.transport.websocket.session import Session

__all__ = ["IdleWatch"]

_log = logging.getLogger("pykratos.websocket")


class IdleWatch:
    """Closes a session that received nothing for ``timeout`` seconds.

    One timer per session, re-armed only when it fires early, so a busy connection costs a
    clock read per message instead of a timer per message.
    """

    __slots__ = ("_code", "_handle", "_session", "_task", "_timeout")

    def __init__(self, session: Session, timeout: float, code: int = 1000) -> None:
        self._session = session
        self._timeout = timeout
        self._code = code
        self._task: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        session.last_seen = loop.time()
        self._handle = loop.call_at(session.last_seen + timeout, self._check)

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        due = self._session.last_seen + self._timeout
        if loop.time() < due:
            self._handle = loop.call_at(due, self._check)
            return
        _log.info("closing idle websocket session %s", self._session.id)
        self._task = loop.create_task(self._session.close(self._code, "idle timeout"))

    def cancel(self) -> None:
        self._handle.cancel()
