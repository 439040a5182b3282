"""Every knob of the Kafka broker, with its default, in one place.

The defaults suit a real cluster and at-least-once delivery:

* ``session_timeout_ms=45000`` and ``heartbeat_interval_ms=3000``, Apache Kafka's defaults
  (KIP-735): a member whose handlers hold the event loop for a few seconds keeps its place in
  the group. A throw-away test broker wants the opposite: Tansu completes a group join after
  about half the session timeout (rounded up to whole seconds), so a 45 s session makes every
  join take ~23 s there; tests and benchmarks pass
  :data:`~framework.transport.kafka.tansu.FAST_JOIN` (2 s / 0.5 s, a ~1 s join). A broker
  that rejects the session timeout (outside Apache Kafka's ``group.min.session.timeout.ms`` ..
  ``group.max.session.timeout.ms``, 6 s .. 30 min by default) gets one retry with
  ``fallback_session_timeout_ms`` and a warning.
* fetches as the Java consumer makes them (``fetch_min_bytes=1``, ``fetch_max_bytes`` 50 MiB,
  ``max_partition_fetch_bytes`` 1 MiB) except ``fetch_max_wait_ms=100``: see its attribute.
* ``acks="all"`` and no idempotence: the idempotent producer needs ``InitProducerId``, which
  Tansu rejects; enable it explicitly on a real Kafka cluster.
* commits every ``commit_interval`` seconds or ``commit_every`` finished messages, whichever
  comes first, plus a final commit on stop and on partition revocation.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Literal, get_args

from framework.broker.acks import Acks
from framework.broker.addresses import check_host_ports
from framework.broker.options import AutoOffsetReset
from framework.checks import check_counts, check_seconds
from framework.transport.kafka.partitioner import (
    KeylessPartitioning,
    PartitionerFn,
    resolve_partitioner,
)

__all__ = [
    "PRODUCER_ACKS",
    "AutoOffsetReset",
    "IsolationLevel",
    "KafkaOptions",
    "Ordering",
    "SaslMechanism",
    "SecurityProtocol",
]

Ordering = Literal["auto", "partition", "key"]
IsolationLevel = Literal["read_uncommitted", "read_committed"]

# Every spelling of ``acks`` -> its level (Kafka's numbers, Sarama's names, ours).
_ACKS_LEVELS: dict[int | str, Acks] = {
    "all": "all",
    -1: "all",
    "leader": "leader",
    1: "leader",
    "none": "none",
    0: "none",
}
#: The aiokafka ``acks`` of each level.
PRODUCER_ACKS: dict[Acks, int | str] = {"all": "all", "leader": 1, "none": 0}
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    """Options of :class:`~framework.transport.kafka.KafkaBroker` (see the module docstring).

    Numbers are checked at construction (``ValueError`` naming the option): seconds are
    finite, > 0 and at most :data:`~framework.checks.MAX_SECONDS`; ``*_ms`` values, byte
    sizes and partition counts are ints >= 1 (``linger_ms`` and ``fetch_max_wait_ms`` >= 0)
    up to 2**31 - 1, as Kafka's protocol carries them in 32 bits.

    Attributes:
        bootstrap_servers: ``host:port[,host:port...]`` of the cluster.
        client_id: client id sent to the broker; also prefixes default group names.
        connect_timeout: seconds to reach the cluster before ``connect`` fails.
        publish_timeout: seconds ``publish`` waits for the acknowledgement before raising
            :class:`~framework.transport.kafka.errors.KafkaPublishTimeoutError` (503
            ``BROKER_UNAVAILABLE``); keep it below the request timeout of the servers that
            publish, so a caller gets a 503 rather than a 504.
        request_timeout_ms: per-request timeout of producer and consumers.
        acks: the acknowledgement level of ``publish`` (and of the batching publishers):
            ``"all"`` (or ``-1``: every in-sync replica has the record), ``"leader"`` (or
            ``1``: the partition leader wrote it) or ``"none"`` (or ``0``: sent, not
            acknowledged; failures the client sees are still reported, see
            :mod:`framework.broker.acks`). A ``Publisher(broker, acks=...)`` may use
            another level; dead letters always go with ``"all"``.
        partitioner: how a message's partition is chosen: ``"murmur2"`` (the Java client's
            key hash, byte-compatible; keyless messages by ``keyless_partitioning``), or a
            custom ``(key, partitions) -> partition`` callable or its import path
            ``"package.module:function"`` (see :mod:`~framework.transport.kafka.partitioner`).
        keyless_partitioning: where the built-in partitioner puts keyless messages:
            ``"round_robin"`` (each topic's partitions in turn) or ``"random"``.
        enable_idempotence: idempotent producer (not supported by Tansu).
        linger_ms: producer linger for ``publish`` (the batching publisher batches itself).
        max_batch_size: producer batch size in bytes (also the batching publisher's batch).
        max_request_size: largest record (bytes, serialized) the producer sends; larger
            ones fail at once with ``MessageSizeTooLargeError``. Match it to the topics'
            ``max.message.bytes``: a dead letter bigger than this is dead-lettered truncated
            (see :mod:`~framework.transport.kafka.deadletter`).
        compression_type: ``None``, ``"gzip"``, ``"snappy"``, ``"lz4"`` or ``"zstd"``.
        session_timeout_ms: consumer group session timeout: a member that sends no heartbeat
            for this long is removed from the group and its partitions move to the others
            (Apache Kafka's default, 45 s; see the module docstring for test brokers).
        fallback_session_timeout_ms: used when the broker rejects ``session_timeout_ms``.
        heartbeat_interval_ms: consumer heartbeat period (capped at a third of the session
            timeout; Apache Kafka's default, 3 s).
        max_poll_interval_ms: maximum time between two fetches before leaving the group.
        join_timeout: seconds ``subscribe`` waits for the group join and assignment.
        auto_offset_reset: where a group without committed offsets starts; a broadcast
            subscription always starts at ``"latest"`` (its group is new on every start).
        max_records: records per fetch (``getmany``) call.
        fetch_timeout_ms: how long one ``getmany`` call waits for records.
        fetch_max_wait_ms: how long the broker may hold a fetch request that found no data.
            One fetch per broker is in flight at a time, so while it waits on idle
            partitions, partitions that have data wait too: keep it short (the client
            default of 500 ms stalls a drain for up to that long).
        fetch_min_bytes: bytes a fetch request asks the broker to gather before answering
            (waiting at most ``fetch_max_wait_ms``): go-queue's ``MinBytes``. Above 1 it
            trades latency for fewer, larger fetches on a busy topic.
        fetch_max_bytes: most bytes one fetch response may carry across its partitions
            (go-queue's ``MaxBytes``); a single record batch larger than it is still
            returned, so it never blocks consumption.
        max_partition_fetch_bytes: bytes fetched per partition per request.
        isolation_level: ``"read_uncommitted"`` (every record) or ``"read_committed"``
            (skip records of aborted transactions, stop at the last stable offset).
        max_buffered: fetched records waiting for (or in) a worker before fetching waits.
        pause_after: seconds the fetch buffer may stay full before the partitions filling it
            are paused, so that one slow or blocked partition never stops the others (see
            :mod:`~framework.transport.kafka.backpressure`).
        commit_interval: seconds between two offset commits while messages finish.
        commit_every: commit as soon as this many messages finished since the last commit.
        rebalance_drain_timeout: seconds a revocation waits for in-flight messages of the
            revoked partitions before committing what finished and letting them go.
        dlq_retry_backoff: first wait (seconds, doubled up to 5 s) before retrying a failed
            dead-letter publish; the partition waits, it never skips the message.
        ordering: default ordering of subscriptions (``spec.options["ordering"]`` wins):
            ``"partition"`` keeps partition order (parallelism <= assigned partitions),
            ``"key"`` keeps key order (parallelism up to ``spec.concurrency``), ``"auto"``
            uses ``"partition"`` while ``spec.concurrency`` <= assigned partitions and
            ``"key"`` beyond.
        security_protocol: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
        sasl_mechanism: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` (SASL protocols).
        sasl_username: SASL user name (SASL protocols).
        sasl_password: SASL password (SASL protocols).
        ssl_cafile: CA bundle that verifies the brokers (SSL protocols; default: the
            system's trusted CAs).
        ssl_certfile: client certificate, for brokers requiring mutual TLS.
        ssl_keyfile: private key of ``ssl_certfile``.
        ssl_check_hostname: verify that the broker certificate names the host connected to.
        delay_relay: who forwards delayed records to their topics when due
            (:mod:`~framework.transport.kafka.delay`): ``None`` (the default) runs the relay
            in a broker that subscribed to anything (consuming services relay), once the
            delay topics exist (the first delayed publish creates them; checked every
            ``delay_check_interval`` seconds); ``True`` from ``connect`` (creating the
            topics); ``False`` never (another process must). Delayed records wait in the
            delay topics while no relay runs.
        delay_check_interval: seconds between two checks for the delay topics by a broker
            waiting to start its relay (``delay_relay=None``).
        delay_topic_prefix: prefix of the delay level topics (``<prefix>.0`` ...
            ``<prefix>.23``) and of the relay's group (``<prefix>.relay``).
        delay_partitions: partitions of each delay level topic the broker creates (the
            relays' parallelism).
        delay_replication_factor: replicas of each delay level topic the broker creates;
            ``None`` (the default): 3, or the number of brokers of a smaller cluster.
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "pykratos"
    connect_timeout: float = 10.0
    publish_timeout: float = 5.0
    request_timeout_ms: int = 30_000
    acks: int | str = "all"
    partitioner: str | PartitionerFn = "murmur2"
    keyless_partitioning: KeylessPartitioning = "round_robin"
    enable_idempotence: bool = False
    linger_ms: int = 0
    max_batch_size: int = 64 * 1024
    max_request_size: int = 1024 * 1024
    compression_type: str | None = None
    session_timeout_ms: int = 45_000
    fallback_session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    join_timeout: float = 30.0
    auto_offset_reset: AutoOffsetReset = "earliest"
    max_records: int = 1_000
    fetch_timeout_ms: int = 500
    fetch_max_wait_ms: int = 100
    fetch_min_bytes: int = 1
    fetch_max_bytes: int = 50 * 1024 * 1024
    max_partition_fetch_bytes: int = 1024 * 1024
    isolation_level: IsolationLevel = "read_uncommitted"
    max_buffered: int = 4_000
    pause_after: float = 0.5
    commit_interval: float = 1.0
    commit_every: int = 1_000
    rebalance_drain_timeout: float = 5.0
    dlq_retry_backoff: float = 0.2
    ordering: Ordering = "auto"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    delay_relay: bool | None = None
    delay_topic_prefix: str = "pykratos.delay"
    delay_partitions: int = 1
    delay_replication_factor: int | None = None
    delay_check_interval: float = 10.0

    def __post_init__(self) -> None:
        # A config value is text until typed ("1" from an env var or a ${ACKS:1} default);
        # for acks, text of a number means that number, as the producer only takes 0/1/-1/all.
        if isinstance(self.acks, str) and self.acks.strip().lstrip("-").isdigit():
            object.__setattr__(self, "acks", int(self.acks))
        # True == 1 would pass as "leader"
        if isinstance(self.acks, bool) or self.acks not in _ACKS_LEVELS:
            raise ValueError(f"acks must be one of none, leader, all, 0, 1, -1, got {self.acks!r}")
        if self.keyless_partitioning not in get_args(KeylessPartitioning):
            raise ValueError(
                "keyless_partitioning must be one of round_robin, random, got "
                f"{self.keyless_partitioning!r}"
            )
        resolve_partitioner(self.partitioner)  # ValueError naming a bad import path
        check_host_ports("bootstrap_servers", self.bootstrap_servers)
        choices = {
            "auto_offset_reset": (self.auto_offset_reset, get_args(AutoOffsetReset)),
            "isolation_level": (self.isolation_level, get_args(IsolationLevel)),
            "ordering": (self.ordering, get_args(Ordering)),
            "security_protocol": (self.security_protocol, get_args(SecurityProtocol)),
            "sasl_mechanism": (self.sasl_mechanism, get_args(SaslMechanism)),
        }
        for name, (chosen, allowed) in choices.items():
            if chosen not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {chosen!r}")
        self._check_numbers()
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be lower than session_timeout_ms")
        if self.fetch_min_bytes > self.fetch_max_bytes:
            raise ValueError(
                f"fetch_min_bytes ({self.fetch_min_bytes}) must not exceed fetch_max_bytes "
                f"({self.fetch_max_bytes}): the broker could never answer a fetch early"
            )
        self._check_security()
        if not self.delay_topic_prefix:
            raise ValueError("delay_topic_prefix must be a non-empty topic name prefix")

    def _check_numbers(self) -> None:
        owner = "KafkaOptions"
        check_seconds(
            owner,
            connect_timeout=self.connect_timeout,
            publish_timeout=self.publish_timeout,
            join_timeout=self.join_timeout,
            pause_after=self.pause_after,
            commit_interval=self.commit_interval,
            rebalance_drain_timeout=self.rebalance_drain_timeout,
            dlq_retry_backoff=self.dlq_retry_backoff,
            delay_check_interval=self.delay_check_interval,
        )
        # Kafka's protocol carries these as int32 (timeouts, sizes, partition counts).
        check_counts(
            owner,
            maximum=_INT32_MAX,
            request_timeout_ms=self.request_timeout_ms,
            max_batch_size=self.max_batch_size,
            max_request_size=self.max_request_size,
            session_timeout_ms=self.session_timeout_ms,
            fallback_session_timeout_ms=self.fallback_session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            max_poll_interval_ms=self.max_poll_interval_ms,
            # 0 would make the fetch loop spin: getmany returns at once on idle partitions
            fetch_timeout_ms=self.fetch_timeout_ms,
            fetch_min_bytes=self.fetch_min_bytes,
            fetch_max_bytes=self.fetch_max_bytes,
            max_partition_fetch_bytes=self.max_partition_fetch_bytes,
            delay_partitions=self.delay_partitions,
        )
        # 0: no linger (send at once); 0: the broker answers a fetch without waiting
        check_counts(
            owner,
            minimum=0,
            maximum=_INT32_MAX,
            linger_ms=self.linger_ms,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )
        check_counts(
            owner,
            max_records=self.max_records,
            max_buffered=self.max_buffered,
            commit_every=self.commit_every,
        )
        if self.delay_replication_factor is not None:  # an int16 in CreateTopics
            check_counts(
                owner, maximum=2**15 - 1, delay_replication_factor=self.delay_replication_factor
            )

    def _check_security(self) -> None:
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        if sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_username and sasl_password"
            )
        if not sasl and (self.sasl_username or self.sasl_password):
            raise ValueError(
                "sasl_username/sasl_password are set but security_protocol is "
                f"{self.security_protocol}: use SASL_SSL (or SASL_PLAINTEXT)"
            )
        files = [self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile]
        if not tls and any(files):
            raise ValueError(
                f"ssl_* files are set but security_protocol is {self.security_protocol}: "
                "use SSL or SASL_SSL"
            )
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("ssl_certfile and ssl_keyfile go together (mutual TLS)")

    def security_kwargs(self) -> dict[str, Any]:
        """The aiokafka client keyword arguments for the security options (TLS context
        built here, so a missing or bad file fails ``connect`` with the file named)."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.security_protocol.endswith("SSL"):
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            context.check_hostname = self.ssl_check_hostname
            if self.ssl_certfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            kwargs["ssl_context"] = context
        return kwargs

    @property
    def acks_level(self) -> Acks:
        """``acks`` as a level of :mod:`framework.broker.acks` (``0`` -> ``"none"``...)."""
        return _ACKS_LEVELS[self.acks]

    @property
    def servers(self) -> list[str]:
        """``bootstrap_servers`` split into a list."""
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]
