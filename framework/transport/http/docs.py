"""Swagger UI (``/docs``) and ReDoc (``/redoc``) served from this process, with no CDN.

FastAPI's own pages load their JavaScript, CSS, favicon (and ReDoc's Google fonts) from public
CDNs: offline they are blank, and every visit tells those hosts who reads the API. The HTTP
server turns them off in the FastAPI app it builds and installs these pages instead, whose
assets come from the ``fastapi-offline`` package (MIT; it ships the Swagger UI 5 and ReDoc 2
bundles, which render FastAPI's OpenAPI 3.1 documents) and are served by the server itself
under ``<docs path>/assets/``. Only the files named in :data:`ASSETS` are served.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from framework.errors import Error
from framework.transport.http.errors import error_response

__all__ = ["ASSETS", "asset_directory", "install_docs"]

#: The files served under ``<docs path>/assets/``, with their media types.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}


def asset_directory() -> Path:
    """The folder holding the bundles (``fastapi_offline/static``).

    Raises:
        ModuleNotFoundError: ``fastapi-offline`` is not installed (``pip install
            'pykratos[http]'`` installs it).
    """
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install_docs(app: FastAPI, docs_path: str | None, redoc_path: str | None) -> None:
    """Add the Swagger UI page at ``docs_path`` and ReDoc at ``redoc_path`` (``None``: not
    that one), reading ``app.openapi_url``; the assets are served under
    ``<docs_path or redoc_path>/assets/``. Nothing is added when both are ``None`` or the app
    serves no OpenAPI document.

    Raises:
        ModuleNotFoundError: as :func:`asset_directory`.
    """
    openapi_url = app.openapi_url
    base = docs_path or redoc_path
    if base is None or openapi_url is None:
        return
    directory = asset_directory()
    assets = f"{base.rstrip('/')}/assets"
    missing = Error(404, "NOT_FOUND", "no such documentation asset")

    async def asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            return error_response(missing)
        # The bundles are versioned with the installed package: a day of caching is safe.
        return FileResponse(directory / name, media_type=media_type,
                            headers={"cache-control": "public, max-age=86400"})

    routes: list[tuple[str, Callable[..., Any]]] = [(f"{assets}/{{name}}", asset)]
    if docs_path is not None:
        redirect_url = f"{docs_path.rstrip('/')}/oauth2-redirect"

        async def swagger(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{assets}/swagger-ui.css",
                swagger_favicon_url=f"{root}{assets}/favicon.png",
                oauth2_redirect_url=f"{root}{redirect_url}",
                swagger_ui_parameters=app.swagger_ui_parameters,
            )

        async def oauth2_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

        routes += [(docs_path, swagger), (redirect_url, oauth2_redirect)]
    if redoc_path is not None:

        async def redoc(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return get_redoc_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}{assets}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{assets}/favicon.png",
                with_google_fonts=False,
            )

        routes.append((redoc_path, redoc))
    for path, endpoint in routes:
        # Like the health routes: outside the middleware chain and the OpenAPI document.
        app.router.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False,
                                 route_class_override=APIRoute)
