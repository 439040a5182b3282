"""tests/services.py: where the real services are and which ports tests take (item 24)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tests import services
from tests.services import (
    DEFAULT_AMQP_URL,
    DEFAULT_MQTT_URL,
    DEFAULT_POSTGRES_URL,
    DEFAULT_REDIS_URL,
    amqp_url,
    free_port,
    mqtt_url,
    port_range,
    postgres_url,
    proxied_url,
    redis_url,
    require_url,
)

TESTS = Path(__file__).resolve().parent


def test_amqp_url_default_environment_and_private_vhost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYKRATOS_TEST_AMQP_URL", raising=False)
    assert amqp_url() == DEFAULT_AMQP_URL
    assert amqp_url("pykratos-x") == "amqp://guest:guest@127.0.0.1:5672/pykratos-x"
    monkeypatch.setenv("PYKRATOS_TEST_AMQP_URL", "amqp://u:p@rabbit.internal:5673/team%2Fa")
    assert amqp_url() == "amqp://u:p@rabbit.internal:5673/team%2Fa"
    # A private vhost keeps the server and the credentials, and is quoted ("/" is a path).
    assert amqp_url("a/b") == "amqp://u:p@rabbit.internal:5673/a%2Fb"


def test_postgres_url_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYKRATOS_TEST_POSTGRES_URL", raising=False)
    assert postgres_url() == DEFAULT_POSTGRES_URL
    monkeypatch.setenv("PYKRATOS_TEST_POSTGRES_URL", "postgresql+asyncpg://me@db:6543/other")
    assert postgres_url() == "postgresql+asyncpg://me@db:6543/other"


def test_mqtt_url_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYKRATOS_TEST_MQTT_URL", raising=False)
    assert mqtt_url() == DEFAULT_MQTT_URL
    monkeypatch.setenv("PYKRATOS_TEST_MQTT_URL", "mqtt://mq.internal:1884")
    assert mqtt_url() == "mqtt://mq.internal:1884"


def test_redis_url_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYKRATOS_TEST_REDIS_URL", raising=False)
    assert redis_url() == DEFAULT_REDIS_URL
    monkeypatch.setenv("PYKRATOS_TEST_REDIS_URL", "redis://cache.internal:6390/3")
    assert redis_url() == "redis://cache.internal:6390/3"


def test_require_url_checks_the_urls_own_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYKRATOS_REQUIRE_SERVICES", raising=False)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        require_url(f"postgresql+asyncpg://me@127.0.0.1:{port}/db", "PostgreSQL")  # no skip
    with pytest.raises(pytest.skip.Exception, match=f"RabbitMQ on 127.0.0.1:{port}"):
        require_url(f"amqp://guest:guest@127.0.0.1:{port}/v", "RabbitMQ")
    checked: list[tuple[str, int]] = []
    monkeypatch.setattr(services, "require_port", lambda h, p, *_: checked.append((h, p)))
    require_url("amqp://guest@rabbit.internal/", "RabbitMQ")  # no port: the scheme's
    require_url("postgresql+asyncpg://me@db.internal/x", "PostgreSQL")
    assert checked == [("rabbit.internal", 5672), ("db.internal", 5432)]


@pytest.mark.parametrize("value", ["20000", "20000-", "x-y", "2-1", "0-10", "1-70000", "-5"])
def test_port_range_rejects_malformed_values(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PYKRATOS_TEST_PORT_RANGE", value)
    with pytest.raises(ValueError, match="PYKRATOS_TEST_PORT_RANGE must be LOW-HIGH"):
        port_range()


def test_free_port_keeps_to_the_port_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYKRATOS_TEST_PORT_RANGE", raising=False)
    assert port_range() is None
    low = free_port()  # any port the OS hands out; its neighbours are very likely free too
    low = min(low, 65535 - 40)
    monkeypatch.setenv("PYKRATOS_TEST_PORT_RANGE", f" {low}-{low + 39} ")
    assert port_range() == range(low, low + 40)
    picked = {free_port() for _ in range(30)}
    assert picked <= set(range(low, low + 40))
    assert len(picked) > 1  # random order: parallel callers rarely collide


def test_free_port_reports_a_range_that_is_all_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("PYKRATOS_TEST_PORT_RANGE", f"{port}-{port}")
        with pytest.raises(RuntimeError, match=f"no free port in PYKRATOS_TEST_PORT_RANGE={port}"):
            free_port()


# A service address spelled out: loopback with a service's standard port (RabbitMQ, PostgreSQL,
# Redis, NATS, MQTT), as "host:port", ("host", port) or a URL without a port.
_PORTS = "5671|5672|5432|6379|4222|1883"
_ADDRESS = re.compile(rf"""(127\.0\.0\.1|localhost)["']?\s*[:,]\s*({_PORTS})\b""")
_URL = re.compile(
    r"""\b(amqps?|postgres(ql)?(\+\w+)?|redis|nats|mqtt)://[^\s"'/]*(127\.0\.0\.1|localhost)"""
    r"""(?!:\d)"""
)


def test_no_test_spells_a_service_address() -> None:
    """Every test reaches RabbitMQ and PostgreSQL through tests/services.py, so that
    PYKRATOS_TEST_AMQP_URL / PYKRATOS_TEST_POSTGRES_URL move all of them at once."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name in ("services.py", "test_services.py") and path.parent == TESTS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _ADDRESS.search(line) or _URL.search(line):
                offenders.append(f"{path.relative_to(TESTS)}:{number}: {line.strip()}")
    assert offenders == [], "use tests/services.py (amqp_url, postgres_url, ...):\n" + "\n".join(
        offenders
    )


def test_the_address_patterns_catch_the_usual_spellings() -> None:
    for line in [
        'URL = "amqp://guest:guest@127.0.0.1:5672/"',
        'require_port("127.0.0.1", 5432, "PostgreSQL")',
        'engine = create_async_engine("postgresql+asyncpg://postgres@localhost/test")',
        "redis = 'redis://localhost:6379/0'",
    ]:
        assert _ADDRESS.search(line) or _URL.search(line), line
    for line in [
        'RabbitBroker("amqp://guest:secret@127.0.0.1:1/")',  # deliberately unreachable
        '{"DSN": "postgres://u:p@h/db"}',  # config data, not a service
        'HttpServer("127.0.0.1", 0)',
    ]:
        assert not (_ADDRESS.search(line) or _URL.search(line)), line


def test_proxied_url_keeps_scheme_credentials_and_path() -> None:
    assert proxied_url("amqp://guest:pw@rabbit.internal:5672/vh", 4000) == (
        "amqp://guest:pw@127.0.0.1:4000/vh"
    )
    assert proxied_url("nats://nats.internal:4222", 4001) == "nats://127.0.0.1:4001"
