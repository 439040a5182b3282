"""MQTT 5 implementation of :class:`framework.broker.broker.Broker` on aiomqtt/paho-mqtt.

The broker holds one publishing session; every subscription has a session of its own (see
:mod:`~framework.transport.mqtt.subscription`). Sessions start with ``clean_start`` off and
a session expiry, so after a dropped connection the server resends what was not
acknowledged, and a restarted instance with the same ``client_id`` resumes its sessions.

Mapping of the framework's terms:

* topic: an MQTT topic (publish) or topic filter with ``+``/``#`` (subscribe);
* group: an MQTT 5 shared subscription ``$share/<group>/<topic>``; broadcast: a plain one;
* headers: MQTT 5 user properties (:mod:`~framework.transport.mqtt.headers`);
* key: a user property (MQTT has no key); it orders messages inside one subscription;
* retries: in process, the message unacknowledged meanwhile; dead letters: to
  ``<topic>/dlq`` (the concrete topic the message came on) or the subscriber's ``dlq``;
* delay: not supported (MQTT has no delayed delivery): ``publish(delay=...)`` and
  ``publish(deliver_at=...)`` raise ``NotImplementedError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar

import aiomqtt

from framework.broker.acks import Acks, publish_mode
from framework.broker.addresses import check_url
from framework.broker.broker import Broker, MessageProcessor, PublishResult
from framework.broker.closing import stop_subscriptions_now
from framework.broker.publisher import dead_letter
from framework.broker.schedule import refuse_delay
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import routing_tag, tagged_headers
from framework.checks import check_counts, check_seconds
from framework.transport.mqtt import headers as hdr
from framework.transport.mqtt.connection import Connection, ConnectSettings
from framework.transport.mqtt.errors import TopicError
from framework.transport.mqtt.options import (
    KNOWN_OPTIONS,
    QOS_LEVELS,
    check_topic_name,
    resolve_filter,
    tagged_topic,
)
from framework.transport.mqtt.publishing import ConfirmedPublisher, publish_properties
from framework.transport.mqtt.subscription import MqttSubscription

__all__ = ["DLQ_SUFFIX", "MqttBroker"]

log = logging.getLogger("pykratos.mqtt")

#: Appended to a message's topic to make its default dead-letter topic.
DLQ_SUFFIX = "/dlq"
_MAX_RECEIVE = 65535  # Receive Maximum is a two-byte integer (MQTT 5 §3.1.2.11.3)


# Acknowledgement level <-> QoS (see MqttBroker.acks_levels).
_QOS: dict[Acks, int] = {"none": 0, "leader": 1, "all": 2}
_LEVEL: dict[int, Acks] = {qos: level for level, qos in _QOS.items()}


class MqttBroker(Broker):
    """MQTT 5 broker (see the module docstring).

    Args:
        url: ``mqtt://[user[:password]@]host[:port]`` (``mqtts://`` for TLS).
        qos: QoS of publishes and default maximum QoS of subscriptions (0, 1 or 2); a
            subscriber may override it with the ``qos`` option.
        client_id: stable id of this instance: the publishing session is ``<id>-pub``, each
            subscription ``<id>-<digest of its subscription and handler>``. Give each
            instance its own stable id (e.g. the pod name) so that a restarted instance
            resumes its sessions and gets the messages it had not acknowledged; ``None``
            picks a random one.
        session_expiry: seconds the server keeps a subscription's session (its subscription
            and unacknowledged or queued messages) after a disconnection.
        receive_maximum: unacknowledged QoS 1/2 messages the server may send each
            subscription at once (the MQTT 5 flow-control window, like a prefetch).
        keepalive: seconds between PINGREQs; the server drops the connection after 1.5x.
        connect_timeout: seconds ``connect`` (and each reconnection attempt) may take.
        reconnect_interval: seconds between reconnection attempts after a connection loss.
        publish_timeout: seconds a publish may wait for its PUBACK/PUBCOMP, across
            reconnections, before it fails.
        will_topic: topic of the last will the server publishes if this instance's
            publishing session ends without a DISCONNECT (crash, network loss); none if unset.
        will_payload: the will's payload (UTF-8 text).
        will_qos: the will's QoS.
        will_retain: publish the will as a retained message.
    """

    kind = "mqtt"
    #: subscriber options this broker reads (checked by the broker server before subscribing).
    supported_options = KNOWN_OPTIONS
    #: acknowledgement level -> QoS: 0 has no acknowledgement, 1 a PUBACK, 2 the PUBCOMP
    #: that ends the exactly-once exchange (the strongest confirmation MQTT has).
    acks_levels: ClassVar[Mapping[Acks, str]] = {
        "none": "native: QoS 0",
        "leader": "native: QoS 1",
        "all": "native: QoS 2",
    }

    def __init__(
        self,
        url: str = "mqtt://127.0.0.1:1883",
        *,
        qos: int = 1,
        client_id: str | None = None,
        session_expiry: int = 3600,
        receive_maximum: int = 256,
        keepalive: int = 60,
        connect_timeout: float = 10.0,
        reconnect_interval: float = 1.0,
        publish_timeout: float = 30.0,
        will_topic: str | None = None,
        will_payload: str = "",
        will_qos: int = 1,
        will_retain: bool = False,
    ) -> None:
        check_url("url", url, ("mqtt", "mqtts", "tcp"))
        # an int, not True or 0.0: both equal a level but are not one
        check_counts("MqttBroker", minimum=0, maximum=2, qos=qos, will_qos=will_qos)
        check_counts("MqttBroker", maximum=_MAX_RECEIVE, receive_maximum=receive_maximum)
        # MQTT 5 encodes them as a four-byte and a two-byte integer; 0 means "ends with the
        # connection" and "no keep-alive".
        check_counts("MqttBroker", minimum=0, maximum=0xFFFFFFFF, session_expiry=session_expiry)
        check_counts("MqttBroker", minimum=0, maximum=0xFFFF, keepalive=keepalive)
        check_seconds(
            "MqttBroker",
            connect_timeout=connect_timeout,
            reconnect_interval=reconnect_interval,
            publish_timeout=publish_timeout,
        )
        if client_id is not None and not hdr.is_plain(client_id):
            raise ValueError(f"client_id must be printable UTF-8, got {client_id!r}")
        if will_topic is not None:
            try:
                check_topic_name(will_topic)
            except TopicError as exc:
                raise TopicError(f"will_topic: {exc}") from None
        self.url = url
        self.qos = qos
        self.client_id = client_id or f"pykratos-{uuid.uuid4().hex[:12]}"
        self.will_topic = will_topic
        self.will_payload = will_payload
        self.will_qos = will_qos
        self.will_retain = will_retain
        self.settings = ConnectSettings(
            url=url,
            keepalive=keepalive,
            session_expiry=session_expiry,
            receive_maximum=receive_maximum,
            connect_timeout=connect_timeout,
            reconnect_interval=reconnect_interval,
        )
        self.publish_timeout = publish_timeout
        self._connection: Connection | None = None
        self._publisher: ConfirmedPublisher | None = None
        self._topics: set[str] = set()  # publish topics already checked
        self._subscriptions: list[MqttSubscription] = []

    @property
    def endpoint(self) -> str:
        """The broker URL without its password."""
        return self.settings.safe_url

    @property
    def subscriptions(self) -> list[MqttSubscription]:
        """Subscriptions started by this broker and not stopped yet."""
        return list(self._subscriptions)

    @property
    def connection(self) -> Connection:
        """The publishing session (after :meth:`connect`)."""
        if self._connection is None:
            raise RuntimeError("MqttBroker is not connected: call `await broker.connect()`")
        return self._connection

    async def connect(self) -> None:
        """Open the publishing session (with the last will, if configured).

        Raises:
            MqttUnavailableError: the server is unreachable or refused the CONNECT.
        """
        if self._connection is not None:
            return
        will = None
        if self.will_topic is not None:
            will = aiomqtt.Will(
                self.will_topic, self.will_payload.encode(), self.will_qos, self.will_retain
            )
        # The publishing session holds no subscription: it ends with its connection.
        settings = dataclasses.replace(self.settings, session_expiry=0)
        connection = Connection(settings, f"{self.client_id}-pub", name="mqtt publisher", will=will)
        await connection.start()
        self._connection = connection
        self._publisher = ConfirmedPublisher(connection, timeout=self.publish_timeout)

    async def close(self) -> None:
        """Stop remaining subscriptions (without waiting for handlers), flush batching
        publishers and DISCONNECT."""
        await stop_subscriptions_now(self._subscriptions)
        await self.close_batch_publishers()
        connection, self._connection = self._connection, None
        self._publisher = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        deliver_at: datetime | None = None,
        partition: int | None = None,
        tag: str | None = None,
        qos: int | None = None,
        retain: bool = False,
    ) -> PublishResult:
        """Publish ``body`` to ``topic``; return after PUBACK (QoS 1) / PUBCOMP (QoS 2).

        Args:
            key: ordering key, carried as a user property.
            headers: headers, carried as MQTT 5 user properties (byte-exact, see
                :mod:`~framework.transport.mqtt.headers`).
            delay / deliver_at: not supported by MQTT: a delay > 0 or any ``deliver_at``
                raises ``NotImplementedError`` (checked like
                :func:`~framework.broker.schedule.due_time` first).
            partition: not supported (MQTT topics have no partitions): raises
                ``NotImplementedError``.
            tag: the message's tag (the ``x-tag`` header, :mod:`framework.broker.tags`); the
                message goes to ``<topic>/~tag/<tag>`` (the result's ``topic``), where
                subscribers with that tag (and those without tags) get it.
            qos: this message's QoS (default: the level of a ``with_acks`` handle, else
                the broker's ``qos``).
            retain: ask the server to retain the message: it is also sent to every later
                subscriber of the topic (MQTT 5 §3.3.1.3); an empty body clears it.

        Raises:
            NotImplementedError: a ``delay``, a ``deliver_at`` or a ``partition`` given.
            ValueError: both given, a negative delay or a naive ``deliver_at``.
            TopicError: ``topic`` is not a valid topic name (wildcards, ``$``).
            PublishFailedError: refused by the server or not acknowledged in time.
        """
        refuse_delay(
            self.kind,
            topic,
            delay,
            deliver_at,
            "MQTT 5 has no delayed delivery nor scheduled messages (a server extension such as "
            "EMQX's $delayed topics is not portable); publish when due yourself or use a "
            "broker that has it",
        )
        if partition is not None:
            raise NotImplementedError(
                f"MQTT has no partitions (publish to {topic!r} with partition={partition})"
            )
        headers = tagged_headers(headers, tag)
        mode = publish_mode(self.default_acks)
        publisher = self._publisher
        if publisher is None:
            raise RuntimeError("MqttBroker is not connected: call `await broker.connect()`")
        if topic not in self._topics:
            check_topic_name(topic)
            self._topics.add(topic)
        # A tag is a topic level, so the server filters (see mqtt.options); taken from the
        # header so a dead letter or a republished message goes where its tag says.
        destination = tagged_topic(topic, routing_tag(headers))
        message_id = uuid.uuid4().hex
        properties = publish_properties(
            hdr.to_user_properties(headers, key=key, message_id=message_id)
        )
        level = _QOS[mode.acks] if qos is None else qos
        if level not in QOS_LEVELS:
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        try:
            await publisher.publish(
                destination, body, qos=level, retain=retain, properties=properties
            )
        except Exception as exc:
            if level == 0:  # fire-and-forget: counted and logged besides raised
                self.unconfirmed.report(destination, exc, mode)
            raise
        return PublishResult(topic=destination, message_id=message_id)

    @property
    def default_acks(self) -> Acks:
        """The level of the broker's ``qos``: 0 ``"none"``, 1 ``"leader"``, 2 ``"all"``."""
        return _LEVEL[self.qos]

    def dead_letter_topic(self, spec: SubscriberSpec, topic: str) -> str | None:
        """Where dead letters of a message received on ``topic`` by ``spec`` go: the
        subscriber's ``dlq`` if set, else ``<topic>/dlq``; ``None`` when disabled."""
        if spec.dlq == "":
            return None
        return spec.dlq or f"{topic}{DLQ_SUFFIX}"

    async def subscribe(
        self, spec: SubscriberSpec, processor: MessageProcessor
    ) -> MqttSubscription:
        """Subscribe ``spec`` on a session of its own; return once the SUBACK arrived.

        Raises:
            UnsupportedOptionError: an option the MQTT broker does not know.
            TopicError: an invalid topic filter or group, or a refused subscription.
            MqttUnavailableError: the server is unreachable.
        """
        filter = resolve_filter(spec, default_qos=self.qos)
        client_id = f"{self.client_id}-{filter.client_suffix()}"
        if any(s.connection.client_id == client_id for s in self._subscriptions):
            # One client id, two connections: the server would keep kicking one off.
            raise TopicError(
                f"subscriber {spec.display_name}: already subscribed to "
                f"{filter.subscription!r} on this broker"
            )
        # Dead letters go at QoS 1 at least: the original is acknowledged once its copy is.
        letters: Broker = self if self.qos >= 1 else self.with_acks("leader")
        subscription = MqttSubscription(
            spec=spec,
            processor=processor,
            filter=filter,
            settings=self.settings,
            client_id=client_id,
            dead_letter=lambda message, result: dead_letter(letters, spec, message, result),
            on_stopped=self._forget,
        )
        try:
            await subscription.start()
        except BaseException:
            await asyncio.shield(subscription.stop(0))
            raise
        self._subscriptions.append(subscription)
        log.info(
            "subscribed %s: %s (qos %d, session %s)",
            spec.display_name,
            ", ".join(filter.subscriptions),
            filter.qos,
            subscription.connection.client_id,
        )
        return subscription

    def _forget(self, subscription: MqttSubscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)
