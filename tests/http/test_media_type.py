"""A JSON route's body sent as another media type is answered 415 UNSUPPORTED_MEDIA_TYPE
(it was a 400 saying the body "should be a valid dictionary"), and the OpenAPI document
lists the 415 on exactly the operations that take a JSON body."""

from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel

from framework.transport.http import HttpServer, Router


class Note(BaseModel):
    text: str


def _server() -> HttpServer:
    router = Router()

    @router.post("/notes")
    async def notes(note: Note) -> Note:
        return note

    @router.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    server = HttpServer(port=0)
    server.include_router(router)
    return server


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/json", 200),
        ("Application/JSON; charset=utf-8", 200),
        ("application/merge-patch+json", 200),
        (None, 415),  # no type: FastAPI's strict_content_type (on by default) does not read it
    ],
)
async def test_json_body_media_types(content_type: str | None, status: int) -> None:
    server = _server()
    await server.start()
    headers = {"content-type": content_type} if content_type else {}
    try:
        async with httpx.AsyncClient(base_url=server.endpoint) as client:
            response = await client.post("/notes", content=b'{"text": "hi"}', headers=headers)
            document = (await client.get("/openapi.json")).json()
    finally:
        await server.stop(5)
    assert response.status_code == status, response.text
    if status == 415:
        assert response.json()["reason"] == "UNSUPPORTED_MEDIA_TYPE"
        assert response.json()["metadata"] == {"accepted": "application/json"}
    assert "415" in document["paths"]["/notes"]["post"]["responses"]
    assert "415" not in document["paths"]["/ping"]["get"]["responses"]
