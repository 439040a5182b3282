"""The dependency-injector container: config -> data -> biz -> service -> servers.

Every provider is a singleton built once by :func:`app_template.wire.wire_app`, at start, so
a missing or broken dependency fails before the first request, with its name.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from framework.broker import Broker, create_broker
from framework.data import DEFAULT_DESTINATION, OutboxRelay, TransactionalOutbox

from app_template.biz.order import OrderUseCase
from app_template.conf.conf import Bootstrap, BrokerConf
from app_template.data.db import Database
from app_template.data.events import NOTIFICATIONS, OrderEventMessages
from app_template.data.order_repo import SqlOrderRepo
from app_template.data.transactions import SqlOrderTransactions
from app_template.server.grpc import new_grpc_server
from app_template.server.http import new_http_server
from app_template.server.middleware import default_middlewares
from app_template.server.ops import new_operations
from app_template.server.websocket import new_websocket_server
from app_template.service.order_grpc import OrderGrpcService
from app_template.service.order_http import OrderHttpService
from app_template.service.order_ws import OrderWsService

__all__ = ["Container"]


def _broker(conf: BrokerConf) -> Broker:
    return create_broker(conf.kind, **conf.options)


def _optional_broker(conf: BrokerConf | None) -> Broker | None:
    return _broker(conf) if conf is not None else None


def _destinations(broker: Broker, notifications: Broker | None) -> dict[str, Broker]:
    """Outbox destination -> broker."""
    brokers = {DEFAULT_DESTINATION: broker}
    if notifications is not None:
        brokers[NOTIFICATIONS] = notifications
    return brokers


class Container(containers.DeclarativeContainer):
    """Provide ``config`` (a :class:`Bootstrap`) before building anything."""

    config = providers.Dependency(instance_of=Bootstrap)

    # data
    database = providers.Singleton(
        Database,
        url=config.provided.data.database.url,
        schema=config.provided.data.database.schema_name,
        echo=config.provided.data.database.echo,
    )
    broker = providers.Singleton(_broker, config.provided.data.broker)
    notification_broker = providers.Singleton(_optional_broker, config.provided.data.notifications)
    destinations = providers.Singleton(_destinations, broker, notification_broker)
    # Events commit with the rows that caused them (trace headers are taken at that moment);
    # the relay publishes them after the commit.
    outbox = providers.Singleton(
        TransactionalOutbox,
        sessions=database.provided.sessions,
        enabled=config.provided.data.outbox.enabled,
        brokers=destinations,
    )
    outbox_relay = providers.Singleton(
        OutboxRelay,
        engine=database.provided.engine,
        brokers=destinations,
        outbox=outbox,
        batch_size=config.provided.data.outbox.batch_size,
        poll_interval=config.provided.data.outbox.poll_interval,
        listen=config.provided.data.outbox.listen,
        retention=config.provided.data.outbox.retention,
        inbox_retention=config.provided.data.outbox.inbox_retention,
        cleanup_interval=config.provided.data.outbox.cleanup_interval,
        max_backoff=config.provided.data.outbox.max_backoff,
    )
    order_repo = providers.Singleton(SqlOrderRepo, database=database)
    order_transactions = providers.Singleton(SqlOrderTransactions, outbox=outbox)
    order_events = providers.Singleton(
        OrderEventMessages,
        notifications=providers.Callable(lambda b: b is not None, notification_broker),
    )

    # biz
    order_usecase = providers.Singleton(
        OrderUseCase, repo=order_repo, events=order_events, transactions=order_transactions
    )

    # service
    order_http = providers.Singleton(OrderHttpService, usecase=order_usecase)
    order_grpc = providers.Singleton(OrderGrpcService, usecase=order_usecase)
    order_ws = providers.Singleton(OrderWsService, usecase=order_usecase)

    # servers: metrics, rate limiting and authentication shared by all of them
    operations = providers.Singleton(new_operations, config)
    http_server = providers.Singleton(
        new_http_server,
        conf=config.provided.server.http,
        middlewares=providers.Callable(
            default_middlewares,
            config.provided.server.http.timeout,
            validation=False,
            ops=operations,
        ),
        orders=order_http,
        ops=operations,
        metrics_conf=config.provided.metrics,
    )
    grpc_server = providers.Singleton(
        new_grpc_server,
        conf=config.provided.server.grpc,
        middlewares=providers.Callable(
            default_middlewares, config.provided.server.grpc.timeout, ops=operations
        ),
        orders=order_grpc,
    )
    ws_server = providers.Singleton(
        new_websocket_server,
        conf=config.provided.server.websocket,
        middlewares=providers.Callable(
            default_middlewares, config.provided.server.websocket.timeout, ops=operations
        ),
        orders=order_ws,
        ops=operations,
    )
