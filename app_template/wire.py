"""Build the App from a :class:`Bootstrap` (go-kratos' ``wireApp``)."""

from __future__ import annotations

from app_template.conf.conf import Bootstrap
from app_template.container import Container
from app_template.service import order_events
from app_template.server.middleware import default_middlewares
from framework import App
from framework.broker import BrokerServer

__all__ = ["wire_app"]


def wire_app(bootstrap: Bootstrap, container: Container | None = None) -> App:
    """Wire the container and return an App that has not started yet.

    Building every singleton here (not lazily at the first request) is what makes a missing
    dependency fail at start with its name.
    """
    container = container or Container()
    container.config.override(bootstrap)
    container.check_dependencies()
    container.wire(modules=[order_events])
    notification_broker = container.notification_broker()
    broker_servers = [
        BrokerServer(
            container.broker(),
            routers=[order_events.router]
            + ([order_events.notifications] if notification_broker is None else []),
            middlewares=default_middlewares(bootstrap.data.broker.timeout),
            name="events",
        )
    ]
    if notification_broker is not None:
        assert bootstrap.data.notifications is not None
        broker_servers.append(
            BrokerServer(
                notification_broker,
                routers=[order_events.notifications],
                middlewares=default_middlewares(bootstrap.data.notifications.timeout),
                name="notifications",
            )
        )
    return App(
        bootstrap.app.name,
        version=bootstrap.app.version,
        # Stopped in reverse: HTTP and gRPC stop taking requests first; the WebSocket server
        # closes its sessions (1001) before the broker, whose subscribers push to them, drains.
        servers=[
            *broker_servers,
            container.ws_server(),
            container.grpc_server(),
            container.http_server(),
        ],
        resources=[container.database()],
        stop_timeout=bootstrap.app.stop_timeout,
        drain_delay=bootstrap.app.drain_delay,
        after_stop=[container.unwire],
    )
