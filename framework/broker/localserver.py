"""Start and stop a throw-away broker server subprocess on loopback (tests, benchmarks).

Shared by :mod:`framework.transport.kafka.tansu` and :mod:`framework.transport.mqtt.mosquitto`:
finding a free port, waiting for the port to accept connections, and terminating the
process (killed when it does not exit in time).
"""

from __future__ import annotations

import socket
import subprocess
import time

__all__ = ["free_port", "terminate", "wait_listening"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(process: subprocess.Popen[bytes], port: int, timeout: float) -> int | None:
    """Wait until ``127.0.0.1:port`` accepts a TCP connection.

    Returns ``None`` once it does, or the process's exit code if it exits first.

    Raises:
        TimeoutError: the port did not accept connections within ``timeout`` seconds (the
            process is left running; the caller stops it).
    """
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            return code
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return None
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"127.0.0.1:{port} not listening after {timeout:g}s") from None
            time.sleep(0.02)  # a subprocess binding a port has no event to wait on


def terminate(process: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM ``process`` if it still runs, SIGKILL it after ``timeout`` seconds.

    Safe with ``None`` or a process that already exited.
    """
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
