"""Helpers for tests that need a real service (PostgreSQL, RabbitMQ, Kafka/Tansu).

Locally, an unreachable service skips its tests. In CI, ``.ci/run`` sets
``PYKRATOS_REQUIRE_SERVICES=1`` and the same situation fails the test, so a broker that is
down can never hide behind a skip.

Where the services are, and which ports the tests may take, comes from the environment (the
defaults are the services on loopback); test code asks these helpers and never spells an
address itself:

- ``PYKRATOS_TEST_AMQP_URL``: RabbitMQ (default ``amqp://guest:guest@127.0.0.1:5672/``). Its
  virtual host is the one tests use unless they make a private one (:func:`amqp_url`).
- ``PYKRATOS_TEST_NATS_URL``: NATS with JetStream (default ``nats://127.0.0.1:4222``); tests make
  and delete their own streams (:func:`nats_url`).
- ``PYKRATOS_TEST_MQTT_URL``: Mosquitto (default ``mqtt://127.0.0.1:1883``). At-least-once
  MQTT tests start their own ``mosquitto`` instead (its stock queue limit drops messages).
- ``PYKRATOS_TEST_REDIS_URL``: Redis (default ``redis://127.0.0.1:6379/0``). It is shared: tests
  use keys under a prefix of their own and delete them, never ``FLUSHDB``/``FLUSHALL``.
- ``PYKRATOS_TEST_POSTGRES_URL``: PostgreSQL, as a SQLAlchemy URL (default
  ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``); tests make and drop their own schemas.
- ``PYKRATOS_TEST_ETCD``: the ``etcd`` server binary the registry tests start on free ports
  with a temporary data directory (default: ``etcd`` on ``PATH``, else ``/usr/bin/etcd``, as
  Debian's ``etcd-server`` package installs it).
- ``PYKRATOS_TEST_PORT_RANGE``: ``LOW-HIGH`` (inclusive): :func:`free_port`, hence the Tansu
  broker the Kafka tests start and the services run as subprocesses, take ports from it only.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

__all__ = [
    "DEFAULT_AMQP_URL",
    "DEFAULT_MQTT_URL",
    "DEFAULT_NATS_URL",
    "DEFAULT_POSTGRES_URL",
    "DEFAULT_REDIS_URL",
    "amqp_url",
    "etcd_binary",
    "free_port",
    "mqtt_url",
    "nats_url",
    "port_range",
    "postgres_url",
    "proxied_url",
    "rabbitmqctl",
    "redis_url",
    "require_port",
    "require_url",
    "services_required",
    "unavailable",
]

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Ports assumed when a URL names none (the services' standard ports).
_DEFAULT_PORTS = {
    "amqp": 5672,
    "amqps": 5671,
    "postgresql": 5432,
    "postgres": 5432,
    "nats": 4222,
    "mqtt": 1883,
    "mqtts": 8883,
    "redis": 6379,
    "rediss": 6379,
}


def services_required() -> bool:
    return os.environ.get("PYKRATOS_REQUIRE_SERVICES", "") not in ("", "0", "false")


def unavailable(what: str) -> None:
    """Skip (locally) or fail (CI) because ``what`` is not reachable."""
    message = f"{what} is not available"
    if services_required():
        pytest.fail(f"{message} and PYKRATOS_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(message)


def require_port(host: str, port: int, what: str, timeout: float = 1.0) -> None:
    """Make sure something listens on ``host:port``, else :func:`unavailable`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError:
        unavailable(f"{what} on {host}:{port}")


def require_url(url: str, what: str, timeout: float = 1.0) -> None:
    """:func:`require_port` on the host and port of ``url`` (its scheme's port if it has none)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]  # postgresql+asyncpg -> postgresql
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    if parts.hostname is None or port is None:
        raise ValueError(f"{what}: cannot tell the host and port of {url!r}")
    require_port(parts.hostname, port, what, timeout)


def amqp_url(vhost: str | None = None) -> str:
    """The RabbitMQ URL of the tests: ``PYKRATOS_TEST_AMQP_URL``, else :data:`DEFAULT_AMQP_URL`.

    With ``vhost``, the same server and credentials on that virtual host (for tests that make
    a private one with :func:`rabbitmqctl`, which talks to the RabbitMQ node of this machine).
    """
    url = os.environ.get("PYKRATOS_TEST_AMQP_URL") or DEFAULT_AMQP_URL
    if vhost is None:
        return url
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(vhost, safe="")))


def nats_url() -> str:
    """The NATS URL of the tests: ``PYKRATOS_TEST_NATS_URL``, else :data:`DEFAULT_NATS_URL`."""
    return os.environ.get("PYKRATOS_TEST_NATS_URL") or DEFAULT_NATS_URL


def postgres_url() -> str:
    """The PostgreSQL URL of the tests (SQLAlchemy form): ``PYKRATOS_TEST_POSTGRES_URL``, else
    :data:`DEFAULT_POSTGRES_URL`."""
    return os.environ.get("PYKRATOS_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def mqtt_url() -> str:
    """The MQTT server of the tests: ``PYKRATOS_TEST_MQTT_URL``, else :data:`DEFAULT_MQTT_URL`."""
    return os.environ.get("PYKRATOS_TEST_MQTT_URL") or DEFAULT_MQTT_URL


def redis_url() -> str:
    """The Redis URL of the tests: ``PYKRATOS_TEST_REDIS_URL``, else :data:`DEFAULT_REDIS_URL`."""
    return os.environ.get("PYKRATOS_TEST_REDIS_URL") or DEFAULT_REDIS_URL


def proxied_url(url: str, port: int) -> str:
    """``url`` pointed at a local TCP proxy on ``port`` (loopback) instead of its server, keeping
    its scheme, credentials and path: for tests that cut connections through the proxy."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def rabbitmqctl(*args: str, timeout: float = 30.0) -> str:
    """Run ``rabbitmqctl``; :func:`unavailable` when it is not installed."""
    if shutil.which("rabbitmqctl") is None:
        unavailable("rabbitmqctl")
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


def port_range() -> range | None:
    """The ports of ``PYKRATOS_TEST_PORT_RANGE`` (``LOW-HIGH``, both included), or None.

    Raises :class:`ValueError` for a value that is not two ports with LOW <= HIGH.
    """
    value = os.environ.get("PYKRATOS_TEST_PORT_RANGE", "").strip()
    if not value:
        return None
    low, sep, high = value.partition("-")
    try:
        first, last = int(low), int(high)
    except ValueError:
        first = last = -1
    if not sep or not 1 <= first <= last <= 65535:
        raise ValueError(
            f"PYKRATOS_TEST_PORT_RANGE must be LOW-HIGH with 1 <= LOW <= HIGH <= 65535, "
            f"e.g. 20000-20999; got {value!r}"
        )
    return range(first, last + 1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Taken from ``PYKRATOS_TEST_PORT_RANGE`` when it is set (tried in random order, so that
    parallel callers rarely pick the same one), else chosen by the operating system. Raises
    :class:`RuntimeError` when every port of the range is busy.
    """
    ports = port_range()
    if ports is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for port in random.sample(ports, len(ports)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(
        f"no free port in PYKRATOS_TEST_PORT_RANGE={ports.start}-{ports.stop - 1}: all are in use"
    )


def etcd_binary() -> str:
    """The etcd server binary: ``PYKRATOS_TEST_ETCD``, else ``etcd`` on ``PATH``, else
    ``/usr/bin/etcd``; :func:`unavailable` when none exists."""
    configured = os.environ.get("PYKRATOS_TEST_ETCD")
    candidates = [configured] if configured else [shutil.which("etcd"), "/usr/bin/etcd"]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    unavailable("etcd (apt-get install etcd-server, or set PYKRATOS_TEST_ETCD)")
    raise AssertionError("unreachable")
