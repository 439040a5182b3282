"""Span name, kind and start attributes for the operation in a :class:`Transport`.

Names and attributes follow the OpenTelemetry semantic conventions where one exists:

========= ========= ============================== =========================================
kind      span kind span name                      attributes
========= ========= ============================== =========================================
http      SERVER    ``GET /v1/orders/{id}``        ``http.request.method``, ``http.route``,
                    (the operation)                ``url.path``, ``url.scheme``,
                                                   ``user_agent.original``
grpc      SERVER    ``order.v1.Order/GetOrder``    ``rpc.system``, ``rpc.service``,
                    (the operation, no leading /)  ``rpc.method``
websocket SERVER    the message type               ``websocket.message.type``
brokers   CONSUMER  ``process <topic>``            ``messaging.system`` (the kind),
                                                   ``messaging.destination.name``,
                                                   ``messaging.operation.type=process``,
                                                   message id, partition, offset, size,
                                                   ``pykratos.messaging.attempt``
========= ========= ============================== =========================================

Every kind other than http, grpc and websocket is a broker (kafka, rabbitmq, memory, ...).
Every span also gets ``pykratos.transport`` (the kind).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framework.broker.message import Message
from framework.transport.context import Transport

__all__ = [
    "REPLY_HEADER_KINDS",
    "SERVER_KINDS",
    "Attributes",
    "consumer_attributes",
    "grpc_method_attributes",
    "server_attributes",
    "span_name",
]

Attributes = dict[str, Any]

#: Transports whose handlers answer a caller: SERVER spans. The rest consume: CONSUMER spans.
SERVER_KINDS = frozenset({"http", "grpc", "websocket"})
#: Transports that send ``Transport.reply_headers`` back to the caller.
REPLY_HEADER_KINDS = frozenset({"http", "grpc"})


def span_name(transport: Transport) -> str:
    """The span name for the operation being served."""
    kind = transport.kind
    if kind == "grpc":
        return transport.operation.lstrip("/")
    if kind in SERVER_KINDS:
        return transport.operation
    return f"process {transport.operation}"


def grpc_method_attributes(method: str) -> Attributes:
    """``rpc.*`` attributes of a full method name (``/pkg.Service/Method``)."""
    service, _, name = method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def server_attributes(transport: Transport) -> Attributes:
    """Start attributes of a SERVER span (http, grpc, websocket)."""
    kind = transport.kind
    if kind == "grpc":
        attributes = grpc_method_attributes(transport.operation)
    elif kind == "http":
        method, _, route = transport.operation.partition(" ")
        attributes = {"http.request.method": method, "http.route": route}
        # Starlette's ASGI scope: plain dict reads, cheaper than building request.url.
        scope = getattr(transport.raw, "scope", None)
        if isinstance(scope, Mapping):
            if "path" in scope:
                attributes["url.path"] = scope["path"]
            if "scheme" in scope:
                attributes["url.scheme"] = scope["scheme"]
        agent = transport.request_headers.get("user-agent")
        if agent:
            attributes["user_agent.original"] = agent
    else:
        attributes = {"websocket.message.type": transport.operation}
    attributes["pykratos.transport"] = kind
    return attributes


def consumer_attributes(transport: Transport) -> Attributes:
    """Start attributes of a CONSUMER span (one message, or a batch)."""
    kind = transport.kind
    attributes: Attributes = {
        "messaging.system": kind,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": transport.operation,
        "pykratos.transport": kind,
    }
    raw = transport.raw
    if isinstance(raw, Message):
        _message_attributes(attributes, raw, kind)
    elif isinstance(raw, list):
        attributes["messaging.batch.message_count"] = len(raw)
    return attributes


def _message_attributes(attributes: Attributes, message: Message, kind: str) -> None:
    if message.id:
        attributes["messaging.message.id"] = message.id
    if message.partition is not None:
        attributes["messaging.destination.partition.id"] = str(message.partition)
    if message.offset is not None:
        key = "messaging.kafka.offset" if kind == "kafka" else "pykratos.messaging.offset"
        attributes[key] = message.offset
    if kind == "rabbitmq" and message.topic:
        attributes["messaging.rabbitmq.destination.routing_key"] = message.topic
    attributes["messaging.message.body.size"] = len(message.body)
    # Retries run the middleware again: one span per attempt, numbered.
    attributes["pykratos.messaging.attempt"] = message.attempt
