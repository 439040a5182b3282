"""AsyncAPI 3.0.0 for a pykratos App: the broker subscribers and declared publishers, and the
WebSocket envelope protocol, as one document next to the HTTP server's OpenAPI.

``build_asyncapi(app)`` makes the document; the HTTP server serves it at ``/asyncapi.json``
(and an offline HTML view at ``/asyncapi``); ``pykratos docs OUT_DIR`` writes it to a folder.
"""

from framework.asyncapi.document import ASYNCAPI_VERSION, build_asyncapi
from framework.asyncapi.files import write_docs
from framework.asyncapi.html import asyncapi_html
from framework.asyncapi.schemas import SchemaRegistry

__all__ = ["ASYNCAPI_VERSION", "SchemaRegistry", "asyncapi_html", "build_asyncapi", "write_docs"]
