"""Server construction: one function per transport, called by the container."""

from app_template.server.grpc import new_grpc_server
from app_template.server.http import new_http_server
from app_template.server.middleware import default_middlewares
from app_template.server.websocket import new_websocket_server

__all__ = ["default_middlewares", "new_grpc_server", "new_http_server", "new_websocket_server"]
