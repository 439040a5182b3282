"""Kafka SASL/SSL and RabbitMQ amqps options: validated at config time, and the TLS settings
really reach the client's handshake (checked against a TLS listener with test certificates;
the machine's Kafka and RabbitMQ are plain, so no broker protocol runs over it)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest

from framework.broker.options_schema import validate_broker_options
from framework.transport.kafka import KafkaBroker
from framework.transport.kafka.options import KafkaOptions
from framework.transport.kafka.tansu import FAST_JOIN
from framework.transport.rabbitmq import RabbitBroker
from tests.tls.certs import Authority


class TlsListener:
    """Accepts TLS connections requiring a client certificate; records each peer's CN."""

    def __init__(self, ca: Authority, server_cert: Any) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(server_cert.cert), str(server_cert.key))
        self.context.load_verify_locations(cafile=str(ca.cert_file))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.peers: asyncio.Queue[str] = asyncio.Queue()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peercert") or {}
            names = [v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"]
            self.peers.put_nowait(names[0] if names else "")
            writer.close()  # then speak no broker protocol: the client gives up

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0, ssl=self.context)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = Authority(tmp_path, "brokers")
    return {
        "ca": ca,
        "server": ca.issue("broker", server=True),
        "client": ca.issue("service-a", server=False),
    }


def test_kafka_security_options_are_validated() -> None:
    with pytest.raises(ValueError, match="sasl_username and sasl_password"):
        KafkaOptions(security_protocol="SASL_SSL")
    with pytest.raises(ValueError, match="use SASL_SSL"):
        KafkaOptions(sasl_username="u", sasl_password="p")
    with pytest.raises(ValueError, match="use SSL or SASL_SSL"):
        KafkaOptions(ssl_cafile="/ca.pem")
    with pytest.raises(ValueError, match="security_protocol must be one of"):
        KafkaOptions(security_protocol="TLS")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sasl_mechanism must be one of"):
        KafkaOptions(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="GSSAPI",  # type: ignore[arg-type]
            sasl_username="u",
            sasl_password="p",
        )
    scram = KafkaOptions(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password="secret",
    ).security_kwargs()
    assert scram == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "secret",
    }
    assert KafkaOptions().security_kwargs() == {}
    # From config: typed and checked like every broker option.
    typed = validate_broker_options(
        "kafka", {"security_protocol": "SSL", "ssl_check_hostname": "false"}
    )
    assert typed == {"security_protocol": "SSL", "ssl_check_hostname": False}


def test_rabbitmq_tls_options_are_validated() -> None:
    with pytest.raises(ValueError, match="amqps://"):
        RabbitBroker("amqp://guest:guest@rabbit.example/", ssl_cafile="/ca.pem")
    with pytest.raises(ValueError, match="go together"):
        RabbitBroker("amqps://h/", ssl_certfile="/c.pem")


async def test_kafka_ssl_presents_the_client_certificate_and_trusts_the_ca(
    pki: dict[str, Any],
) -> None:
    listener = TlsListener(pki["ca"], pki["server"])
    async with listener as port:
        broker = KafkaBroker(
            f"127.0.0.1:{port}",
            security_protocol="SSL",
            ssl_cafile=str(pki["ca"].cert_file),
            ssl_certfile=str(pki["client"].cert),
            ssl_keyfile=str(pki["client"].key),
            connect_timeout=2,
            **FAST_JOIN,
        )
        with pytest.raises(Exception):  # noqa: B017 - the listener speaks no Kafka
            await broker.connect()
        await broker.close()
        assert await asyncio.wait_for(listener.peers.get(), 5) == "service-a"


async def test_rabbitmq_amqps_presents_the_client_certificate_and_trusts_the_ca(
    pki: dict[str, Any],
) -> None:
    listener = TlsListener(pki["ca"], pki["server"])
    host = "localhost"  # the test listener, named as in its certificate: not a RabbitMQ
    async with listener as port:
        broker = RabbitBroker(
            f"amqps://guest:guest@{host}:{port}/",
            ssl_cafile=str(pki["ca"].cert_file),
            ssl_certfile=str(pki["client"].cert),
            ssl_keyfile=str(pki["client"].key),
            connect_timeout=2,
        )
        with pytest.raises(Exception):  # noqa: B017 - the listener speaks no AMQP
            await broker.connect()
        await broker.close()
        assert await asyncio.wait_for(listener.peers.get(), 5) == "service-a"
