"""Typed configuration of the service, scanned from ``configs/`` (see configs/config.yaml)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from framework.broker.factory import create_broker
from framework.broker.options_schema import validate_broker_options
from framework.checks import MAX_SECONDS
from framework.config.model import ConfigModel
from framework.transport.tls import TlsOptions

__all__ = [
    "AppConf",
    "AuthConf",
    "Bootstrap",
    "BrokerConf",
    "DataConf",
    "DatabaseConf",
    "GrpcConf",
    "HttpConf",
    "LogConf",
    "MetricsConf",
    "OutboxConf",
    "RateLimitConf",
    "RegistryConf",
    "ServerConf",
    "TracingConf",
    "WebSocketConf",
]


class _Strict(ConfigModel):
    # A misspelt key is an error naming the key and listing the valid ones (ConfigModel), not
    # a silently ignored setting; a hot reload is held to the same rule.
    # Defaults go in Field(default=...): without the pydantic mypy plugin, a type checker only
    # sees a keyword default, and would otherwise demand every field in ``HttpConf()``.
    pass


class AppConf(_Strict):
    name: str = "app_template"
    version: str = "0.1.0"
    stop_timeout: float = Field(
        default=10.0, gt=0, description="seconds the graceful stop may take"
    )
    drain_delay: float = Field(
        default=0.0, ge=0, description="seconds between readiness off and stop"
    )


class HttpConf(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=0, le=65535)
    timeout: float = Field(default=30.0, gt=0, description="per-request handler timeout, seconds")
    max_body_size: int = Field(
        default=1024 * 1024, ge=0, description="bytes; larger request bodies get 413"
    )
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="requests served at once; more get 429 RATELIMIT before routing (None: "
        "no limit)",
    )
    header_timeout: float | None = Field(
        default=10.0, gt=0, description="seconds to send a request's line and headers; then 408"
    )
    body_timeout: float | None = Field(
        default=30.0, gt=0, description="seconds at most between two reads of a body; then 408"
    )
    keep_alive_timeout: float = Field(
        default=5.0, gt=0, description="seconds an idle kept-alive connection stays open"
    )
    max_header_size: int = Field(
        default=32 * 1024, gt=0, description="bytes of request line and headers; then 431"
    )
    tls: TlsOptions | None = Field(default=None, description="HTTPS; None serves plain HTTP")


class GrpcConf(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(default=9000, ge=0, le=65535)
    timeout: float = Field(default=30.0, gt=0, description="per-call handler timeout, seconds")
    reflection: bool = True
    max_receive_message_length: int = Field(
        default=1024 * 1024, gt=0, description="bytes; larger messages get RESOURCE_EXHAUSTED"
    )
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="calls served at once; more get RESOURCE_EXHAUSTED RATELIMIT before the "
        "middleware (None: no limit)",
    )
    tls: TlsOptions | None = Field(default=None, description="TLS (mTLS with client_auth)")


class WebSocketConf(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(default=8001, ge=0, le=65535)
    timeout: float = Field(default=30.0, gt=0, description="per-message handler timeout, seconds")
    max_message_size: int = Field(
        default=64 * 1024, gt=0, description="bytes; larger frames close 1009"
    )
    send_queue_size: int = Field(default=256, gt=0, description="frames queued per slow client")
    slow_client_policy: Literal["drop_oldest", "disconnect"] = "drop_oldest"
    allowed_origins: list[str] | None = Field(default=None, description="None allows any origin")
    max_connections: int | None = Field(
        default=None, gt=0, description="open connections at most; None: no limit"
    )
    tls: TlsOptions | None = Field(default=None, description="wss://; None serves ws://")


class ServerConf(_Strict):
    http: HttpConf = HttpConf()
    grpc: GrpcConf = GrpcConf()
    websocket: WebSocketConf = WebSocketConf()


class DatabaseConf(_Strict):
    url: str = "sqlite+aiosqlite:///orders.db"
    schema_name: str | None = Field(default=None, alias="schema")
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        # Checked when the config is scanned, not when the engine is built: a malformed URL,
        # a sync driver or a driver that is not installed is then a config error.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        example = "e.g. sqlite+aiosqlite:///orders.db or postgresql+asyncpg://user@host:5432/db"
        try:
            parsed = make_url(url)
            dialect = parsed.get_dialect()
        except NoSuchModuleError:  # an ArgumentError too: first
            raise ValueError(f"unknown database dialect or driver; expected {example}") from None
        except ArgumentError:
            raise ValueError(f"not a database URL; expected {example}") from None
        if not dialect.is_async:
            raise ValueError(f"{parsed.drivername} is not an async driver; use {example}")
        try:
            dialect.import_dbapi()
        except ImportError as exc:
            raise ValueError(
                f"the {parsed.drivername} driver needs {exc.name}, which is not installed"
            ) from None
        return url


class BrokerConf(_Strict):
    kind: Literal["memory", "kafka", "rabbitmq", "nats", "redis", "mqtt"] = "memory"
    timeout: float = Field(default=30.0, gt=0, description="per-message handler timeout, seconds")
    #: passed to the broker's constructor (e.g. bootstrap_servers for Kafka, url for RabbitMQ,
    #: servers for NATS);
    #: checked against ``kind``'s options when the config is scanned (README: broker options)
    options: dict[str, Any] = Field(default_factory=dict, validate_default=True)

    @field_validator("options")
    @classmethod
    def _check_options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # Names, types and the broker's own checks, before anything starts; a bad ``kind``
        # has its own error already.
        kind = info.data.get("kind")
        return options if kind is None else validate_broker_options(kind, options)


class OutboxConf(_Strict):
    """The transactional outbox and its relay (README: Transactional outbox)."""

    enabled: bool = Field(
        default=True,
        description="events commit with the data and a relay publishes them; false publishes "
        "after commit (an event can then be lost)",
    )
    batch_size: int = Field(default=500, ge=1, le=10_000, description="rows per relay round")
    poll_interval: float = Field(
        default=1.0,
        gt=0,
        le=MAX_SECONDS,
        description="seconds between looks when nothing woke the relay",
    )
    listen: bool = Field(default=True, description="PostgreSQL: LISTEN/NOTIFY wakes the relay")
    retention: float = Field(
        default=86_400.0,
        ge=0,
        le=MAX_SECONDS,
        description="seconds sent rows are kept (in outbox_sent; 0: none)",
    )
    inbox_retention: float = Field(
        default=7 * 86_400.0,
        gt=0,
        le=MAX_SECONDS,
        description="seconds an applied message id is remembered",
    )
    cleanup_interval: float = Field(
        default=60.0, gt=0, le=MAX_SECONDS, description="seconds between clean-ups"
    )
    max_backoff: float = Field(
        default=5.0,
        gt=0,
        le=MAX_SECONDS,
        description="longest wait, seconds, between retries while a broker is down",
    )


class DataConf(_Strict):
    database: DatabaseConf = DatabaseConf()
    broker: BrokerConf = BrokerConf()
    # validate_default: the broker check below runs when the file has no outbox section too
    outbox: OutboxConf = Field(default_factory=OutboxConf, validate_default=True)
    #: a separate broker for customer notifications; ``None`` keeps them on ``broker``
    notifications: BrokerConf | None = None

    # The relay marks an event sent once its publish returned: a fire-and-forget broker
    # (acks 'none') would let events be marked that no broker stored. Refused here, one
    # config line, rather than by the relay's constructor (a traceback at wiring).
    @field_validator("outbox")
    @classmethod
    def _outbox_broker_confirms(cls, outbox: OutboxConf, info: ValidationInfo) -> OutboxConf:
        broker = info.data.get("broker")
        if outbox.enabled and broker is not None:
            _refuse_fire_and_forget("data.broker", broker)
        return outbox

    @field_validator("notifications")
    @classmethod
    def _notifications_broker_confirms(
        cls, notifications: BrokerConf | None, info: ValidationInfo
    ) -> BrokerConf | None:
        outbox = info.data.get("outbox")
        if notifications is not None and outbox is not None and outbox.enabled:
            _refuse_fire_and_forget("data.notifications", notifications)
        return notifications


def _refuse_fire_and_forget(where: str, conf: BrokerConf) -> None:
    if create_broker(conf.kind, **conf.options).default_acks == "none":
        raise ValueError(
            f"{where} publishes with acks 'none' (fire-and-forget), so the outbox relay "
            "could mark events sent that were lost; configure it to confirm (kafka: acks; "
            "rabbitmq: publisher_confirms; nats: jetstream_publish; mqtt: qos >= 1) or set "
            "data.outbox.enabled: false"
        )


class LogConf(_Strict):
    format: Literal["console", "json"] = "console"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class TracingConf(_Strict):
    enabled: bool = False
    exporter: Literal["none", "console", "otlp"] = "console"
    endpoint: str | None = Field(
        default=None, description="OTLP collector endpoint (exporter otlp)"
    )
    sample_ratio: float = Field(default=1.0, ge=0, le=1)


class RegistryConf(_Strict):
    """Where the service registers itself (etcd), so clients find it as
    ``discovery:///<app.name>``."""

    kind: Literal["etcd"] = "etcd"
    address: str = Field(default="127.0.0.1:2379", description="etcd client host:port")
    namespace: str = Field(default="/microservices", description="key prefix")
    ttl: int = Field(
        default=15, ge=1, description="lease seconds: how long a crashed instance stays listed"
    )
    deregister_delay: float = Field(
        default=1.0, ge=0, description="seconds between deregistering and draining"
    )
    advertise_host: str | None = Field(
        default=None, description="host to register; None: this machine's address"
    )

    @field_validator("address")
    @classmethod
    def _check_address(cls, address: str) -> str:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port, e.g. 127.0.0.1:2379; got {address!r}")
        return address


class MetricsConf(_Strict):
    enabled: bool = True
    path: str = Field(default="/metrics", description="Prometheus endpoint on the HTTP server")


class RateLimitConf(_Strict):
    enabled: bool = False
    limiter: Literal["bbr", "token_bucket"] = Field(
        default="bbr", description="bbr: adaptive, CPU-driven; token_bucket: fixed rate"
    )
    signal: Literal["cpu", "loop_lag"] = Field(
        default="cpu", description="bbr: CPU of the process, or event-loop lag (shared cores)"
    )
    cpu_threshold: float = Field(
        default=800, gt=0, le=1000, description="bbr: per mille (of a core / of 20 ms lag)"
    )
    rate: float = Field(default=100.0, gt=0, description="token_bucket: calls per second")
    burst: int | None = Field(default=None, ge=1, description="token_bucket: bucket size")
    operations: list[str] = Field(
        default_factory=list, description="operations limited (selector paths); empty: all"
    )


class AuthConf(_Strict):
    enabled: bool = False
    #: HS* secret, or the PEM public key for RS*/ES*/EdDSA
    key: str = Field(default="", validate_default=True)
    algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    audience: str | None = None
    issuer: str | None = None
    leeway: float = Field(default=0.0, ge=0, description="seconds of clock skew allowed")
    public_operations: list[str] = Field(
        default_factory=list, description="operations that need no token (allow list)"
    )

    @field_validator("key")
    @classmethod
    def _key_when_enabled(cls, key: str, info: ValidationInfo) -> str:
        if info.data.get("enabled") and not key:
            raise ValueError("auth.enabled needs a key (e.g. ${JWT_KEY})")
        return key


class Bootstrap(_Strict):
    """The whole configuration tree."""

    app: AppConf = AppConf()
    server: ServerConf = ServerConf()
    data: DataConf = DataConf()
    log: LogConf = LogConf()
    tracing: TracingConf = TracingConf()
    #: ``None`` (default): the service registers nowhere
    registry: RegistryConf | None = None
    metrics: MetricsConf = MetricsConf()
    ratelimit: RateLimitConf = RateLimitConf()
    auth: AuthConf = AuthConf()
