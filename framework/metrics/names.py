"""Instrument and attribute names: the OpenTelemetry semantic conventions where one exists.

=========================================== ========= ==========================================
instrument                                  type      attributes
=========================================== ========= ==========================================
``http.server.request.duration`` (s)        histogram ``http.request.method``, ``http.route``,
                                                      ``http.response.status_code``,
                                                      ``error.type`` (failures)
``http.server.active_requests``             up-down   ``http.request.method``, ``http.route``
``rpc.server.call.duration`` (s)            histogram ``rpc.system.name`` (grpc), ``rpc.method``
                                                      (``pkg.Service/Method``),
                                                      ``rpc.response.status_code`` (``OK``,
                                                      ``NOT_FOUND`` ...), ``error.type``
``rpc.server.active_requests``              up-down   ``rpc.system.name``, ``rpc.method``
``pykratos.websocket.message.duration`` (s) histogram ``websocket.message.type``, ``error.type``
``pykratos.websocket.active_messages``      up-down   ``websocket.message.type``
``pykratos.websocket.sessions``             up-down   (none): open WebSocket connections
``messaging.process.duration`` (s)          histogram ``messaging.system``,
                                                      ``messaging.destination.name``,
                                                      ``messaging.consumer.group.name``,
                                                      ``pykratos.messaging.outcome``,
                                                      ``error.type``
``messaging.client.consumed.messages``      counter   same as above
``messaging.client.operation.duration`` (s) histogram ``messaging.system``,
                                                      ``messaging.destination.name``,
                                                      ``messaging.operation.name`` (publish),
                                                      ``error.type`` (failed publishes)
``messaging.client.sent.messages``          counter   same as above
``pykratos.messaging.consumer.lag``         gauge     ``messaging.system``,
                                                      ``messaging.destination.name``,
                                                      ``messaging.consumer.group.name``,
                                                      ``messaging.destination.partition.id``
                                                      (Kafka: high watermark minus the offset
                                                      a commit may reach)
``pykratos.server.refused_requests``        counter   ``pykratos.server.kind`` (http, grpc),
                                                      ``error.type`` (``RATELIMIT``): refused
                                                      by the admission limit, before the chain
=========================================== ========= ==========================================

``rpc.server.call.duration`` and ``rpc.response.status_code`` follow the RPC conventions as
of semantic-conventions 1.37 (which replaced ``rpc.server.duration`` in milliseconds);
WebSocket has no convention yet, hence the ``pykratos.`` names. ``pykratos.messaging.outcome``
is ``ok``, ``retried`` (the attempt failed and the message will be tried again),
``dead_lettered`` or ``filtered`` (the subscriber's ``tags`` left it out: acknowledged, never
handled, so no duration): each message ends once as ``ok``, ``dead_lettered`` or
``filtered``, so their sum is the number of messages, and ``retried`` counts the extra
attempts. Prometheus sees the names with
dots as underscores and the unit as a suffix (``http_server_request_duration_seconds``).
"""

from __future__ import annotations

__all__ = [
    "ACTIVE_REQUESTS",
    "CONSUMER_LAG",
    "DURATION_BUCKETS",
    "HTTP_ACTIVE",
    "HTTP_DURATION",
    "MESSAGING_CONSUMED",
    "MESSAGING_OPERATION_DURATION",
    "MESSAGING_PROCESS_DURATION",
    "MESSAGING_SENT",
    "OUTCOME",
    "RPC_ACTIVE",
    "RPC_DURATION",
    "SERVER_KIND",
    "SERVER_REFUSED",
    "WS_ACTIVE",
    "WS_DURATION",
    "WS_SESSIONS",
]

HTTP_DURATION = "http.server.request.duration"
HTTP_ACTIVE = "http.server.active_requests"
RPC_DURATION = "rpc.server.call.duration"
RPC_ACTIVE = "rpc.server.active_requests"
WS_DURATION = "pykratos.websocket.message.duration"
WS_ACTIVE = "pykratos.websocket.active_messages"
WS_SESSIONS = "pykratos.websocket.sessions"
MESSAGING_PROCESS_DURATION = "messaging.process.duration"
MESSAGING_CONSUMED = "messaging.client.consumed.messages"
MESSAGING_OPERATION_DURATION = "messaging.client.operation.duration"
MESSAGING_SENT = "messaging.client.sent.messages"
OUTCOME = "pykratos.messaging.outcome"
CONSUMER_LAG = "pykratos.messaging.consumer.lag"
SERVER_REFUSED = "pykratos.server.refused_requests"
SERVER_KIND = "pykratos.server.kind"

#: Active-request instrument per server kind.
ACTIVE_REQUESTS = {"http": HTTP_ACTIVE, "grpc": RPC_ACTIVE, "websocket": WS_ACTIVE}

#: Histogram boundaries in seconds: the semantic conventions' advice for
#: ``http.server.request.duration``, used for every duration here.
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)
