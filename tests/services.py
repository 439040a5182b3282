"""Helpers for tests that need a real service (PostgreSQL, RabbitMQ, Kafka/Tansu).

Locally, an unreachable service skips its tests. In CI, ``.ci/run`` sets
``PYKRATOS_REQUIRE_SERVICES=1`` and the same situation fails the test, so a broker that is
down can never hide behind a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

__all__ = ["free_port", "rabbitmqctl", "require_port", "services_required", "unavailable"]


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
