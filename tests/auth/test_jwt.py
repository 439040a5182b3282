"""JWT: each transport refuses a missing, expired or forged token with 401 / UNAUTHENTICATED
and its reason, admits a signed one, and hands the claims to the handler."""

from __future__ import annotations

import time
from typing import Any

import grpc
import httpx
import jwt
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from framework.auth import (
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    UNAUTHORIZED,
    HttpxJwtAuth,
    JwtSigner,
    JwtVerifier,
    claims_from_context,
    grpc_auth_interceptors,
    jwt_auth,
    jwt_client,
    jwt_handshake,
)
from framework.errors import Error, from_exception
from framework.middleware import chain, recovery, selector
from framework.transport.context import Transport, transport_scope
from framework.transport.grpc import GrpcServer
from framework.transport.http import HttpServer, Router
from framework.transport.websocket import Session, WebSocketServer
from tests.grpc.protos import echo_pb2, echo_pb2_grpc

SECRET = "test-secret-of-at-least-32-bytes!!"
VERIFIER = JwtVerifier(SECRET, audience="orders")


def _token(secret: str = SECRET, **claims: Any) -> str:
    # A day: BAD_TOKENS is built at collection, and a full run reaches these tests minutes later.
    base: dict[str, Any] = {"sub": "alice", "aud": "orders", "exp": int(time.time()) + 86_400}
    return jwt.encode({**base, **claims}, secret, algorithm="HS256")


BAD_TOKENS = [
    (None, UNAUTHORIZED),
    (_token(exp=int(time.time()) - 10), TOKEN_EXPIRED),
    (_token(secret="another-secret-of-at-least-32-bytes"), TOKEN_INVALID),
    (_token(aud="billing"), TOKEN_INVALID),
    ("not.a.jwt", TOKEN_INVALID),
]


def test_verifier_reasons() -> None:
    for token, reason in BAD_TOKENS:
        with pytest.raises(Error) as caught:
            VERIFIER.verify(token)
        assert (caught.value.code, caught.value.reason) == (401, reason)
    assert VERIFIER.verify(_token())["sub"] == "alice"
    no_exp = jwt.encode({"sub": "x", "aud": "orders"}, SECRET, algorithm="HS256")
    with pytest.raises(Error, match="exp"):
        VERIFIER.verify(no_exp)
    with pytest.raises(ValueError, match="none"):
        JwtVerifier(SECRET, algorithms=["none"])


def test_signer_reuses_a_token_until_close_to_expiry() -> None:
    now = [1_000_000.0]
    signer = JwtSigner(SECRET, claims={"sub": "bob", "aud": "orders"}, expires_in=100,
                       clock=lambda: now[0])
    first = signer.token()
    now[0] += 50
    assert signer.token() == first
    now[0] += 40  # 10 s left < a fifth of the lifetime
    assert signer.token() != first
    claims = jwt.decode(
        first, SECRET, algorithms=["HS256"], audience="orders", options={"verify_exp": False}
    )
    assert claims["sub"] == "bob"


async def test_http_refuses_bad_tokens_and_allow_list_passes() -> None:
    routes = Router()

    @routes.get("/v1/me")
    async def me() -> dict[str, Any]:
        claims = claims_from_context()
        assert claims is not None
        return {"sub": claims["sub"]}

    @routes.get("/v1/status")
    async def status() -> dict[str, str]:
        return {"status": "ok"}

    public = {"GET /v1/status"}
    auth = selector(jwt_auth(VERIFIER)).match(lambda op: op not in public).build()
    server = HttpServer(port=0, middlewares=[auth, recovery()])
    server.include_router(routes)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.endpoint) as client:
            for token, reason in BAD_TOKENS:
                headers = {} if token is None else {"Authorization": f"Bearer {token}"}
                response = await client.get("/v1/me", headers=headers)
                assert response.status_code == 401, reason
                assert response.json()["reason"] == reason
            assert (await client.get("/v1/status")).status_code == 200
        signer = JwtSigner(SECRET, claims={"sub": "carol", "aud": "orders"})
        async with httpx.AsyncClient(base_url=server.endpoint, auth=HttpxJwtAuth(signer)) as c:
            response = await c.get("/v1/me")
    finally:
        await server.stop(5)
    assert response.status_code == 200
    assert response.json() == {"sub": "carol"}


async def test_grpc_refuses_with_unauthenticated_and_the_interceptor_signs() -> None:
    seen: list[str] = []

    class Echo(echo_pb2_grpc.EchoServicer):  # type: ignore[misc,name-defined]
        async def Unary(self, request: Any, context: Any) -> Any:
            claims = claims_from_context()
            assert claims is not None
            seen.append(claims["sub"])
            return echo_pb2.EchoReply(text=claims["sub"])

    server = GrpcServer(port=0, middlewares=[jwt_auth(VERIFIER), recovery()])
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, Echo())
    await server.start()
    target = server.endpoint.removeprefix("grpc://")
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            for token, reason in BAD_TOKENS:
                metadata = () if token is None else (("authorization", f"Bearer {token}"),)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Unary(echo_pb2.EchoRequest(text="x"), metadata=metadata)
                assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
                assert from_exception(caught.value).reason == reason
        signer = JwtSigner(SECRET, claims={"sub": "dave", "aud": "orders"})
        async with grpc.aio.insecure_channel(
            target, interceptors=grpc_auth_interceptors(signer)
        ) as channel:
            reply = await echo_pb2_grpc.EchoStub(channel).Unary(echo_pb2.EchoRequest(text="x"))
    finally:
        await server.stop(5)
    assert reply.text == "dave"
    assert seen == ["dave"]


async def test_websocket_handshake_refuses_with_401_and_claims_reach_handlers() -> None:
    ws = WebSocketServer(
        port=0, authenticate=jwt_handshake(VERIFIER), middlewares=[jwt_auth(VERIFIER)]
    )

    @ws.on("whoami")
    async def whoami(payload: Any, session: Session) -> dict[str, Any]:
        claims = claims_from_context()
        assert claims is not None and claims is session.principal
        return {"sub": claims["sub"]}

    await ws.start()
    try:
        for token, reason in BAD_TOKENS:
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            with pytest.raises(InvalidStatus) as caught:
                async with connect(ws.endpoint, additional_headers=headers):
                    pass
            assert caught.value.response.status_code == 401
            assert orjson.loads(caught.value.response.body)["reason"] == reason
        async with connect(f"{ws.endpoint}/?token={_token(sub='erin')}") as client:
            await client.send(orjson.dumps({"type": "whoami"}).decode())
            reply = orjson.loads(await client.recv())
    finally:
        await ws.stop(5)
    assert reply["payload"] == {"sub": "erin"}


async def test_client_middleware_attaches_the_token_to_the_client_transport() -> None:
    signer = JwtSigner(SECRET, claims={"sub": "frank", "aud": "orders"})
    sent: list[dict[str, str]] = []

    async def send(request: Any) -> Any:  # what a client transport does with the headers
        transport_headers = dict(headers)
        sent.append(transport_headers)
        return VERIFIER.verify(transport_headers["authorization"].split(" ", 1)[1])["sub"]

    headers: dict[str, str] = {}
    call = chain(jwt_client(signer))(send)
    with transport_scope(Transport("grpc", "/echo.v1.Echo/Unary", headers)):
        assert await call(None) == "frank"
    assert sent[0]["authorization"].startswith("Bearer ")
    with pytest.raises(RuntimeError):
        await call(None)  # no client transport to write to


async def test_broker_messages_are_checked_only_when_asked() -> None:
    async def handler(request: Any) -> Any:
        return claims_from_context()

    message_headers = {"authorization": f"Bearer {_token(sub='gina')}"}
    with transport_scope(Transport("memory", "orders", {})):
        assert await jwt_auth(VERIFIER)(handler)(None) is None  # brokers off: passes through
        with pytest.raises(Error) as caught:
            await jwt_auth(VERIFIER, brokers=True)(handler)(None)
        assert caught.value.reason == UNAUTHORIZED
    with transport_scope(Transport("memory", "orders", message_headers)):
        claims = await jwt_auth(VERIFIER, brokers=True)(handler)(None)
    assert claims["sub"] == "gina"
