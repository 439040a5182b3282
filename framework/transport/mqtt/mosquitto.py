"""Run a throw-away Mosquitto on loopback, for tests and benchmarks.

Mosquitto's stock configuration keeps at most 1,000 queued QoS 1/2 messages per client
(``max_queued_messages``) and then **drops** new ones for that client, even at QoS 1 (its
log says "Outgoing messages are being dropped"). A fast producer outruns a subscriber, so
an at-least-once test or benchmark needs a server without that limit: this one is started
with ``max_queued_messages 0`` (no limit), no persistence, anonymous access, listening on
``127.0.0.1:port`` only::

    with MosquittoProcess() as mosquitto:
        broker = MqttBroker(mosquitto.url)
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from framework.broker.localserver import free_port, terminate, wait_listening

__all__ = ["MosquittoProcess", "MosquittoUnavailable"]


class MosquittoUnavailable(RuntimeError):
    """The mosquitto binary is missing or did not start listening in time."""


class MosquittoProcess:
    """A ``mosquitto -c <file>`` subprocess on ``127.0.0.1:port`` (a free port by default).

    Args:
        port: the listener's port.
        max_queued_messages: per-client queue limit; 0 (the default here) means none.
        start_timeout: seconds ``start`` waits for the port to accept connections.
        binary: the mosquitto executable (found on ``PATH``, or ``/usr/sbin/mosquitto``).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        max_queued_messages: int = 0,
        start_timeout: float = 10.0,
        binary: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.max_queued_messages = max_queued_messages
        self.start_timeout = start_timeout
        self.binary = binary or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self._dir = tempfile.TemporaryDirectory(prefix="pykratos-mosquitto-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:<port>``, for ``MqttBroker``."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return Path(self._dir.name) / "mosquitto.log"

    def _config(self) -> Path:
        path = Path(self._dir.name) / "mosquitto.conf"
        path.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"max_queued_messages {self.max_queued_messages}\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\n",
            encoding="utf-8",
        )
        return path

    def start(self) -> MosquittoProcess:
        """Start the server; return once it accepts connections.

        Raises:
            MosquittoUnavailable: no binary, it exited, or it did not listen in time.
        """
        if not Path(self.binary).exists():
            raise MosquittoUnavailable(f"no mosquitto binary at {self.binary}")
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self._config())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            code = wait_listening(self._process, self.port, self.start_timeout)
        except TimeoutError:
            self.stop()
            raise MosquittoUnavailable(
                f"mosquitto did not listen on {self.url} within {self.start_timeout:g}s"
            ) from None
        if code is not None:
            err = self._process.stderr.read().decode() if self._process.stderr else ""
            raise MosquittoUnavailable(f"mosquitto exited with code {code}: {err}{self.output()}")
        return self

    def output(self) -> str:
        """The server's log so far (last 2000 characters)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate the server (killed after 5 s); safe to call twice or before start."""
        process, self._process = self._process, None
        terminate(process)
        if process is not None and process.stderr is not None:
            process.stderr.close()

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._dir.cleanup()
