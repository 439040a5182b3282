"""Build an AsyncAPI 3.0.0 document from an App (https://www.asyncapi.com/docs/reference/specification/v3.0.0).

What it lists:

* **servers**: one per broker server (protocol and host from its broker's endpoint, e.g.
  ``kafka://127.0.0.1:9092``; credentials never appear) and one per WebSocket server (``ws``);
* **channels and operations** for every subscriber of every mounted router (``receive``) and
  every publisher declared with ``router.publisher(topic, type)`` (``send``); a channel is a
  topic (its ``address``) on the servers that carry it;
* **messages**: one per payload type, with the payload's JSON Schema
  (:mod:`framework.asyncapi.schemas`), the type the handler's signature names
  (:mod:`framework.broker.signature`);
* **the WebSocket envelope protocol**: a channel per route path whose messages are the
  envelopes ``{"type", "payload", "id"}`` of each message type (``receive`` with a ``reply``
  of ``<type>.reply`` when the handler returns something), the ``error`` envelope, and the
  types the server pushes (declared with ``route.pushes(type, payload_type)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from framework.asyncapi.schemas import SchemaRegistry, component_key

__all__ = ["ASYNCAPI_VERSION", "build_asyncapi"]

ASYNCAPI_VERSION = "3.0.0"
_JSON = "application/json"
_PROTOBUF = "application/x-protobuf"

# The error object every transport sends (framework.errors.Error.to_dict()).
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "reason", "message"],
    "properties": {
        "code": {"type": "integer"},
        "reason": {"type": "string"},
        "message": {"type": "string"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _summary(fn: Any) -> str:
    doc = inspect.getdoc(inspect.unwrap(fn)) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _server_object(endpoint: str, description: str) -> dict[str, Any]:
    parts = urlsplit(endpoint)
    host = parts.hostname or parts.netloc.rpartition("@")[2] or "localhost"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    server: dict[str, Any] = {"host": host, "protocol": parts.scheme or "unknown"}
    if parts.path not in ("", "/"):
        server["pathname"] = parts.path
    if description:
        server["description"] = description
    return server


class _Builder:
    def __init__(self) -> None:
        self.registry = SchemaRegistry()
        self.servers: dict[str, Any] = {}
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}

    # -- pieces ----------------------------------------------------------------------------

    def server(self, name: str, endpoint: str, description: str) -> str:
        key = component_key(name)
        self.servers[key] = _server_object(endpoint, description)
        return key

    def channel(self, key: str, address: str, server: str) -> dict[str, Any]:
        channel: dict[str, Any] = self.channels.setdefault(
            key, {"address": address, "messages": {}, "servers": []}
        )
        ref = {"$ref": f"#/servers/{server}"}
        if ref not in channel["servers"]:
            channel["servers"].append(ref)
        return channel

    def message(self, name: str, payload: dict[str, Any], content_type: str,
                title: str = "") -> str:  # fmt: skip
        key = component_key(name)
        message: dict[str, Any] = {"name": name, "contentType": content_type, "payload": payload}
        if title:
            message["title"] = title
        self.messages[key] = message
        return key

    def payload_message(self, tp: Any) -> str:
        name = getattr(tp, "__name__", None) or str(tp)
        content = _PROTOBUF if hasattr(tp, "DESCRIPTOR") else _JSON
        return self.message(name, self.registry.schema_of(tp), content)

    def operation(self, key: str, action: str, channel_key: str, message_keys: Iterable[str],
                  summary: str = "", reply: dict[str, Any] | None = None) -> None:  # fmt: skip
        channel = self.channels[channel_key]
        refs = []
        for message_key in message_keys:
            channel["messages"][message_key] = {"$ref": f"#/components/messages/{message_key}"}
            refs.append({"$ref": f"#/channels/{channel_key}/messages/{message_key}"})
        operation: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_key}"},
            "messages": refs,
        }
        if summary:
            operation["summary"] = summary
        if reply is not None:
            operation["reply"] = reply
        self.operations[component_key(key)] = operation

    # -- brokers ---------------------------------------------------------------------------

    def broker_server(self, server: Any) -> None:
        from framework.broker.signature import payload_type, signature_of

        kind = getattr(server.broker, "kind", "")
        key = self.server(server.name, server.endpoint, f"{kind} broker server {server.name}")
        for spec in server.subscribers:
            tp = payload_type(
                signature_of(spec.handler), batch=spec.batch is not None, name=spec.display_name
            )
            channel_key = component_key(spec.topic)
            self.channel(channel_key, spec.topic, key)
            summary = _summary(spec.handler)
            group = "broadcast" if spec.broadcast else (spec.group or spec.display_name)
            where = f"group: {group}"
            if spec.tags:  # RocketMQ-style tag filter: the x-tag header of each message
                where += f", tags: {', '.join(sorted(spec.tags))}"
            operation_key = f"{key}.receive.{spec.display_name}"
            self.operation(
                operation_key,
                "receive",
                channel_key,
                [self.payload_message(tp)],
                f"{summary} ({where})" if summary else where,
            )
            if spec.tags:
                # A specification extension: AsyncAPI has no field for a receive filter.
                self.operations[component_key(operation_key)]["x-tags"] = sorted(spec.tags)
        for router in server.routers:
            for publisher in router.publishers:
                channel_key = component_key(publisher.topic)
                self.channel(channel_key, publisher.topic, key)
                self.operation(
                    f"{key}.send.{publisher.name or publisher.topic}",
                    "send",
                    channel_key,
                    [self.payload_message(publisher.payload_type)],
                    publisher.description,
                )

    # -- WebSocket -------------------------------------------------------------------------

    def envelope(self, name: str, payload: dict[str, Any] | None, *, error: bool = False,
                 title: str = "") -> str:  # fmt: skip
        properties: dict[str, Any] = {
            "type": {"type": "string", "const": name},
            "id": {"type": ["string", "number"], "description": "correlation id, echoed"},
        }
        if error:
            properties["error"] = _ERROR_SCHEMA
        elif payload is not None:
            properties["payload"] = payload
        schema = {"type": "object", "required": ["type"], "properties": properties}
        return self.message(f"ws.{name}", schema, _JSON, title)

    def websocket_server(self, server: Any) -> None:
        from framework.transport.address import host_port
        from framework.transport.websocket.handler import message_types

        # Before start the endpoint is empty: the configured address is what clients use.
        endpoint = server.endpoint or f"ws://{host_port(server.host, server.port)}"
        key = self.server(server.name, endpoint, f"WebSocket server {server.name}")
        router = server.router
        routes = list(router.routes.values()) or [router]
        for route in routes:
            path = route.path or "/"
            channel_key = component_key(f"ws{path.replace('/', '.')}")
            self.channel(channel_key, path, key)
            error = self.envelope("error", None, error=True, title="error reply")
            handlers = {**router.handlers, **route.handlers} if route is not router else dict(
                router.handlers)
            for kind, fn in handlers.items():
                payload, reply = message_types(fn)
                request = self.envelope(
                    kind, None if payload is None else self.registry.schema_of(payload)
                )
                replies = [error]
                if reply is not None:
                    replies.insert(0, self.envelope(
                        kind + ".reply", self.registry.schema_of(reply), title="reply"))
                for reply_key in replies:
                    self.channels[channel_key]["messages"][reply_key] = {
                        "$ref": f"#/components/messages/{reply_key}"
                    }
                self.operation(
                    f"{key}{path.replace('/', '.')}.{kind}",
                    "receive",
                    channel_key,
                    [request],
                    _summary(fn),
                    reply={
                        "channel": {"$ref": f"#/channels/{channel_key}"},
                        "messages": [
                            {"$ref": f"#/channels/{channel_key}/messages/{r}"} for r in replies
                        ],
                    },
                )
            pushed = {**router.pushed, **route.pushed} if route is not router else dict(
                router.pushed)
            for kind, (payload_type, description) in pushed.items():
                push = self.envelope(kind, self.registry.schema_of(payload_type), title="push")
                self.operation(f"{key}{path.replace('/', '.')}.push.{kind}", "send",
                               channel_key, [push], description)


def _is(server: Any, module: str, cls: str) -> bool:
    return any(
        c.__name__ == cls and c.__module__.startswith(module) for c in type(server).__mro__
    )


def build_asyncapi(app: Any, *, servers: Iterable[Any] | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``app`` (a :class:`framework.App`), as a dict.

    ``servers`` replaces ``app.servers`` (e.g. a document for part of a service). Broker
    servers and WebSocket servers are described; others (HTTP, gRPC) have their own
    documents (OpenAPI, protobuf).
    """
    builder = _Builder()
    for server in app.servers if servers is None else servers:
        if _is(server, "framework.broker", "BrokerServer"):
            builder.broker_server(server)
        elif _is(server, "framework.transport.websocket", "WebSocketServer"):
            builder.websocket_server(server)
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": app.name, "version": app.version or "0.0.0"},
        "defaultContentType": _JSON,
        "servers": builder.servers,
        "channels": builder.channels,
        "operations": builder.operations,
        "components": {"messages": builder.messages, "schemas": builder.registry.schemas},
    }
    return document
