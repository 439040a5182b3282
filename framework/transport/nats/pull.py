"""Pull requests of a JetStream subscription, answered on a private inbox.

A pull consumer delivers messages only in answer to a request (``$JS.API.CONSUMER.MSG.NEXT.
<stream>.<consumer>`` with ``{"batch": n, "expires": ns}``), sent to the requester's reply
subject (https://docs.nats.io/reference/reference-protocols/nats_api_reference). nats-py's
``fetch()`` waits for each message with its own timeout task and sends one request at a time;
:class:`Puller` instead subscribes to one inbox with a callback and keeps requests
outstanding while the subscription has room, as nats.go's ``Consume`` does: the server keeps
sending while the handlers work.

It counts the messages requested and not received yet (``outstanding``): each message
lowers it by one; a request that ends early says so in a status message without a reply
subject (``408 Request Timeout`` when ``expires`` passed, ``409`` when the server refused
or ended it) with the count it will not send in ``Nats-Pending-Messages``. A ``409`` or
``503`` without that count is a refusal (consumer deleted, JetStream unavailable): it ends
every outstanding request (the count restarts at zero: at worst a few more messages than the
window arrive, and they are handled all the same) and is kept in ``refusal`` so the pull loop
pauses and says so instead of asking again at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["Puller"]

log = logging.getLogger("pykratos.nats")

_STATUS = "Status"
_DESCRIPTION = "Description"
_PENDING = "Nats-Pending-Messages"


class Puller:
    """Sends pull requests for ``stream``/``durable`` and hands each message to ``deliver``.

    Args:
        client: the connection.
        stream: the stream of the consumer.
        durable: the durable consumer's name.
        expires: seconds a request waits on the server for messages before it ends.
        deliver: called with each message, in the order they arrive.
        ended: called when requests ended without messages (room for new ones).
    """

    def __init__(
        self,
        client: Client,
        stream: str,
        durable: str,
        *,
        expires: float,
        deliver: Callable[[Msg], Awaitable[None]],
        ended: Callable[[], None],
    ) -> None:
        self._client = client
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._expires_ns = int(expires * 1_000_000_000)
        self._deliver = deliver
        self._ended = ended
        self._inbox = client.new_inbox()
        self._sub: Subscription | None = None
        #: messages requested and not received (nor given up by the server) yet
        self.outstanding = 0
        #: loop time of the last message or status received
        self.last_answer = 0.0
        #: status of the last request the server refused (``"409 Consumer Deleted"``), until
        #: the pull loop takes it
        self.refusal: str | None = None

    async def start(self) -> None:
        """Subscribe to the inbox (the server has the subscription when this returns)."""
        self._sub = await self._client.subscribe(self._inbox, cb=self._on_msg)
        await self._client.flush()

    async def request(self, batch: int) -> None:
        """Ask for up to ``batch`` more messages."""
        body = json.dumps({"batch": batch, "expires": self._expires_ns}).encode()
        await self._client.publish(self._subject, body, reply=self._inbox)
        self.outstanding += batch

    def forget(self) -> None:
        """Consider every outstanding request gone (unanswered: the connection dropped)."""
        self.outstanding = 0

    async def _on_msg(self, msg: Msg) -> None:
        self.last_answer = asyncio.get_running_loop().time()
        if msg.reply:  # a message: its reply subject is where it is acked
            if self.outstanding > 0:
                self.outstanding -= 1
            await self._deliver(msg)
            return
        headers = msg.headers or {}
        status = headers.get(_STATUS, "")
        if status in ("408", "409", "404", "503"):
            pending = headers.get(_PENDING)
            if pending is not None:
                self.outstanding = max(self.outstanding - int(pending), 0)
            else:
                self.outstanding = 0
                if status in ("409", "503"):  # refused (consumer deleted, no JetStream...)
                    self.refusal = f"{status} {headers.get(_DESCRIPTION, '')}".strip()
            self._ended()

    async def close(self) -> None:
        """Unsubscribe the inbox (messages of requests still outstanding are redelivered
        after the consumer's ``ack_wait``)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.unsubscribe()
