"""The dependency-injector container: config -> data -> biz -> service -> servers.

Every provider is a singleton built once by :func:`app_template.wire.wire_app`, at start, so
a missing or broken dependency fails before the first request, with its name.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from framework.broker import Broker, create_broker
from framework.tracing import TracedPublisher

from app_template.biz.order import OrderUseCase
from app_template.conf.conf import Bootstrap, BrokerConf
from app_template.data.db import Database
from app_template.data.events import BrokerOrderEvents
from app_template.data.order_repo import SqlOrderRepo
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


def _optional_publisher(broker: Broker | None) -> TracedPublisher | None:
    return TracedPublisher(broker) if broker is not None else None


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
    # TracedPublisher: a plain Publisher plus a PRODUCER span and trace headers when tracing is on.
    publisher = providers.Singleton(TracedPublisher, broker=broker)
    notification_broker = providers.Singleton(_optional_broker, config.provided.data.notifications)
    notification_publisher = providers.Singleton(_optional_publisher, notification_broker)
    order_repo = providers.Singleton(SqlOrderRepo, database=database)
    order_events = providers.Singleton(
        BrokerOrderEvents, publisher=publisher, notifications=notification_publisher
    )

    # biz
    order_usecase = providers.Singleton(OrderUseCase, repo=order_repo, events=order_events)

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
