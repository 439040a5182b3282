"""Build the App from a :class:`Bootstrap` (go-kratos' ``wireApp``)."""

from __future__ import annotations

from collections.abc import Callable

from framework import App
from framework.broker import Broker, BrokerServer, Router
from framework.registry import Registrar

from app_template.conf.conf import Bootstrap, BrokerConf, RegistryConf
from app_template.container import Container
from app_template.server.middleware import default_middlewares
from app_template.service import order_events

__all__ = ["wire_app"]


def _broker_server(broker: Broker, conf: BrokerConf, name: str, *routers: Router) -> BrokerServer:
    return BrokerServer(
        broker, routers=list(routers), middlewares=default_middlewares(conf.timeout), name=name
    )


def _registrar(conf: RegistryConf) -> Registrar:
    # Imported here: the etcd client is an extra the service needs only when it registers.
    from framework.registry.etcd import EtcdRegistry

    return EtcdRegistry(conf.address, namespace=conf.namespace, ttl=conf.ttl)


def _metrics_shutdown(container: Container) -> list[Callable[[], None]]:
    metrics = container.operations().metrics
    return [metrics.shutdown] if metrics is not None else []


def wire_app(bootstrap: Bootstrap, container: Container | None = None) -> App:
    """Wire the container and return an App that has not started yet.

    Building every singleton here (not lazily at the first request) is what makes a missing
    dependency fail at start with its name.
    """
    container = container or Container()
    container.config.override(bootstrap)
    container.check_dependencies()
    container.wire(modules=[order_events])
    events, notifications = bootstrap.data.broker, bootstrap.data.notifications
    notification_broker = container.notification_broker()
    if notification_broker is None or notifications is None:
        # One broker carries the events and the customer notifications.
        broker_servers = [
            _broker_server(
                container.broker(),
                events,
                "events",
                order_events.router,
                order_events.notifications,
            )
        ]
    else:
        broker_servers = [
            _broker_server(container.broker(), events, "events", order_events.router),
            _broker_server(
                notification_broker, notifications, "notifications", order_events.notifications
            ),
        ]
    registry = bootstrap.registry
    registrar = _registrar(registry) if registry is not None else None
    # The relay starts after the brokers connected and stops before they close: after HTTP,
    # gRPC and WebSocket drained, so what their last requests committed is still relayed.
    relay = [container.outbox_relay()] if bootstrap.data.outbox.enabled else []
    return App(
        bootstrap.app.name,
        version=bootstrap.app.version,
        # Stopped in reverse: HTTP and gRPC stop taking requests first; the WebSocket server
        # closes its sessions (1001) before the broker, whose subscribers push to them, drains.
        servers=[
            *broker_servers,
            *relay,
            container.ws_server(),
            container.grpc_server(),
            container.http_server(),
        ],
        # The registrar is closed last (after deregistering first, see App).
        resources=[container.database(), *([registrar] if registrar is not None else [])],
        stop_timeout=bootstrap.app.stop_timeout,
        drain_delay=bootstrap.app.drain_delay,
        registrar=registrar,
        deregister_delay=registry.deregister_delay if registry is not None else 0.0,
        advertise_host=registry.advertise_host if registry is not None else None,
        after_stop=[container.unwire, *_metrics_shutdown(container)],
    )
