"""Confirmed publishing over a reconnecting MQTT connection.

``publish`` returns once the server acknowledged the message: PUBACK for QoS 1, PUBCOMP for
QoS 2 (the end of the four-packet exchange), at once for QoS 0 (which has no
acknowledgement). A reason code >= 0x80 (e.g. 0x87 not authorized, 0x97 quota exceeded)
raises :class:`~framework.transport.mqtt.errors.PublishFailedError`; 0x10 "no matching
subscribers" is a success (MQTT 5 §3.4.2.1). If the connection drops before the
acknowledgement, the message is sent again on the next connection, until
``publish_timeout``: at-least-once, so a subscriber may see it twice.
"""

from __future__ import annotations

import asyncio

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from framework.transport.mqtt.connection import Connection, ConnectionLost
from framework.transport.mqtt.errors import PublishFailedError

__all__ = ["ConfirmedPublisher", "publish_properties"]


def publish_properties(user_properties: list[tuple[str, str]]) -> Properties | None:
    """PUBLISH properties carrying ``user_properties`` (``None`` when there are none)."""
    if not user_properties:
        return None
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.UserProperty = user_properties
    return properties


class ConfirmedPublisher:
    """Publishes on ``connection`` and waits for the acknowledgement (module docstring).

    Args:
        connection: the broker's publishing session.
        timeout: seconds a publish may take, waiting for a connection included.
    """

    def __init__(self, connection: Connection, *, timeout: float) -> None:
        self.connection = connection
        self.timeout = timeout

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        """Publish and wait for PUBACK/PUBCOMP (see the module docstring).

        Raises:
            PublishFailedError: refused by the server, or not acknowledged within the timeout.
        """
        connection = self.connection
        if connection.connected.is_set():  # the common case: no timeout scope to set up
            try:
                future = connection.send(topic, payload, qos, retain, properties)
                if future is None:
                    return
                code = await asyncio.wait_for(future, self.timeout)
            except ConnectionLost:
                pass  # sent again once reconnected, below
            except TimeoutError as exc:
                raise self._timed_out(topic) from exc
            else:
                _check(topic, code)
                return
        await self._publish_patiently(topic, payload, qos, retain, properties)

    def _timed_out(self, topic: str) -> PublishFailedError:
        return PublishFailedError(
            f"publish to {topic!r}: not acknowledged by {self.connection.settings.safe_url} "
            f"within {self.timeout:g}s"
        )

    async def _publish_patiently(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties | None
    ) -> None:
        connection = self.connection
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    if connection.closed:
                        raise PublishFailedError(f"publish to {topic!r}: the broker was closed")
                    await connection.connected.wait()
                    try:
                        future = connection.send(topic, payload, qos, retain, properties)
                        if future is None:
                            return
                        code = await future
                    except ConnectionLost:
                        continue  # sent again on the next connection
                    _check(topic, code)
                    return
        except TimeoutError as exc:
            raise self._timed_out(topic) from exc


def _check(topic: str, code: object) -> None:
    if getattr(code, "is_failure", False):
        raise PublishFailedError(f"publish to {topic!r} refused by the server: {code}")
