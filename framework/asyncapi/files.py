"""Write an App's API documents to a folder (``pykratos docs OUT_DIR``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from framework.asyncapi.document import build_asyncapi
from framework.asyncapi.html import asyncapi_html

__all__ = ["write_docs"]


def _openapi(app: Any) -> dict[str, Any] | None:
    for server in app.servers:
        fastapi_app = getattr(getattr(server, "server", server), "app", None)
        openapi = getattr(fastapi_app, "openapi", None)
        if callable(openapi):
            document: dict[str, Any] = dict(openapi())
            # What the running server shows once the App named it (HttpServer.prepare).
            document["info"] = {**document.get("info", {}), "title": app.name}
            if app.version:
                document["info"]["version"] = app.version
            return document
    return None


def write_docs(app: Any, out_dir: str | Path) -> list[Path]:
    """Write ``openapi.json`` (when the App has an HTTP server), ``asyncapi.json`` and
    ``asyncapi.html`` (the offline view) of ``app`` into ``out_dir`` (created if needed);
    return the paths written. The App is not started."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    openapi = _openapi(app)
    if openapi is not None:
        path = out / "openapi.json"
        path.write_text(json.dumps(openapi, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    asyncapi = build_asyncapi(app)
    path = out / "asyncapi.json"
    path.write_text(json.dumps(asyncapi, indent=2) + "\n", encoding="utf-8")
    written.append(path)
    page = out / "asyncapi.html"
    page.write_text(asyncapi_html(asyncapi), encoding="utf-8")
    written.append(page)
    return written
