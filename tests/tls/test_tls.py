"""TLS and mutual TLS on HTTP, gRPC and WebSocket with real clients, certificates made at test
time; a client without the right certificate is refused; rotated files are picked up."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
from pydantic import ValidationError
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage

from framework.transport.grpc import GrpcServer
from framework.transport.http import HttpServer, Router
from framework.transport.tls import ServerTls, TlsOptions
from framework.transport.websocket import WebSocketServer
from tests.grpc.protos import echo_pb2, echo_pb2_grpc
from tests.tls.certs import Authority, Issued, common_name


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = Authority(tmp_path, "test")
    rogue = Authority(tmp_path, "rogue")
    return {
        "ca": ca,
        "server": ca.issue("server-1", server=True),
        "client": ca.issue("client", server=False),
        "rogue_client": rogue.issue("intruder", server=False),
    }


def _client_context(pki: dict[str, Any], client: Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"].cert_file))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def _options(pki: dict[str, Any], client_auth: str = "require") -> TlsOptions:
    return TlsOptions(
        cert_file=str(pki["server"].cert),
        key_file=str(pki["server"].key),
        client_ca_file=str(pki["ca"].cert_file),
        client_auth=client_auth,  # type: ignore[arg-type]
    )


def test_options_are_checked_at_config_time(pki: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="client_ca_file"):
        TlsOptions(cert_file="a", key_file="b", client_auth="require")
    with pytest.raises(ValidationError, match="did you mean 'cert_file'"):
        TlsOptions.model_validate({"cert_fil": "a", "key_file": "b"})
    with pytest.raises(FileNotFoundError):
        ServerTls(TlsOptions(cert_file="/nonexistent.pem", key_file="/nonexistent.key"))


async def test_https_with_mutual_tls(pki: dict[str, Any]) -> None:
    routes = Router()

    @routes.get("/v1/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "tls"}

    server = HttpServer(port=0, tls=_options(pki))
    server.include_router(routes)
    await server.start()
    try:
        assert server.endpoint.startswith("https://")
        url = f"{server.endpoint}/v1/hello"
        async with httpx.AsyncClient(verify=_client_context(pki, pki["client"])) as client:
            response = await client.get(url)
        assert response.json() == {"hello": "tls"}
        for refused in (None, pki["rogue_client"]):
            async with httpx.AsyncClient(verify=_client_context(pki, refused)) as client:
                with pytest.raises(httpx.TransportError):
                    await client.get(url)
        async with httpx.AsyncClient(verify=False) as client:  # plain http is not served
            with pytest.raises(httpx.HTTPError):
                await client.get(url.replace("https://", "http://"))
    finally:
        await server.stop(5)


async def test_grpc_with_mutual_tls(pki: dict[str, Any], tmp_path: Path) -> None:
    class Echo(echo_pb2_grpc.EchoServicer):  # type: ignore[misc,name-defined]
        async def Unary(self, request: Any, context: Any) -> Any:
            return echo_pb2.EchoReply(text=request.text)

    server = GrpcServer(port=0, tls=_options(pki))
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, Echo())
    await server.start()
    target = server.endpoint.removeprefix("grpcs://")
    async def call(client: Issued | None, root: bytes = pki["ca"].cert_file.read_bytes()) -> str:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=root,
            private_key=client.key.read_bytes() if client else None,
            certificate_chain=client.cert.read_bytes() if client else None,
        )
        async with grpc.aio.secure_channel(target, credentials) as channel:
            reply = await echo_pb2_grpc.EchoStub(channel).Unary(
                echo_pb2.EchoRequest(text="hi"), timeout=5
            )
            return str(reply.text)

    try:
        assert await call(pki["client"]) == "hi"
        for refused in (None, pki["rogue_client"]):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(refused)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        # Rotation to a certificate from another CA: the next handshake gets it, so only a
        # client trusting that CA connects.
        new_ca = Authority(tmp_path, "next")
        new_ca.issue("server-2", server=True, into=pki["server"])
        assert await call(pki["client"], new_ca.cert_file.read_bytes()) == "hi"
        with pytest.raises(grpc.aio.AioRpcError):
            await call(pki["client"])
    finally:
        await server.stop(5)


async def test_wss_with_mutual_tls_and_reload(pki: dict[str, Any]) -> None:
    tls = ServerTls(_options(pki))
    ws = WebSocketServer(port=0, tls=tls)

    @ws.on("ping")
    async def ping(payload: Any) -> str:
        return "pong"

    await ws.start()
    try:
        assert ws.endpoint.startswith("wss://")
        async with connect(ws.endpoint, ssl=_client_context(pki, pki["client"])) as client:
            await client.send(orjson.dumps({"type": "ping"}).decode())
            assert orjson.loads(await client.recv())["payload"] == "pong"
            der = client.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
            assert common_name(der) == "server-1"
        for refused in (None, pki["rogue_client"]):
            # TLS 1.3: the server refuses the client certificate after the client's side of
            # the handshake ended, so the client sees the connection closed instead of an
            # HTTP response.
            with pytest.raises((OSError, InvalidMessage)):
                async with connect(ws.endpoint, ssl=_client_context(pki, refused)) as client:
                    await client.send(orjson.dumps({"type": "ping"}).decode())
                    await client.recv()

        reloaded = asyncio.ensure_future(tls.wait_reloaded())
        await asyncio.sleep(0)  # the waiter is registered before the files change
        pki["ca"].issue("server-2", server=True, into=pki["server"])
        await asyncio.wait_for(reloaded, 10)
        async with connect(ws.endpoint, ssl=_client_context(pki, pki["client"])) as client:
            der = client.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert common_name(der) == "server-2"
    finally:
        await ws.stop(5)


async def test_https_picks_up_a_rotated_certificate(pki: dict[str, Any]) -> None:
    tls = ServerTls(_options(pki, client_auth="none"))
    server = HttpServer(port=0, tls=tls)
    await server.start()
    host, port = server.endpoint.removeprefix("https://").rsplit(":", 1)

    async def served_name() -> str:
        _, writer = await asyncio.open_connection(
            host, int(port), ssl=_client_context(pki, None), server_hostname="localhost"
        )
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return common_name(der)

    try:
        assert await served_name() == "server-1"
        reloaded = asyncio.ensure_future(tls.wait_reloaded())
        await asyncio.sleep(0)
        pki["ca"].issue("server-2", server=True, into=pki["server"])
        await asyncio.wait_for(reloaded, 10)
        assert await served_name() == "server-2"
    finally:
        await server.stop(5)
