"""A private etcd server for the registry tests: free ports, a temporary data directory."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.services import etcd_binary, free_port

__all__ = ["EtcdServer"]


class EtcdServer:
    """``etcd`` on 127.0.0.1 with its own client and peer ports; restartable."""

    def __init__(self, data_dir: Path) -> None:
        self.binary = etcd_binary()
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 20.0) -> None:
        client = f"http://{self.address}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--name",
                "pykratos-test",
                "--data-dir",
                str(self.data_dir),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"pykratos-test={peer}",
                "--log-level",
                "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}")
            try:
                # Listening is not serving: /health answers true once a leader is elected.
                with urllib.request.urlopen(f"{client}/health", timeout=0.5) as reply:
                    if b'"true"' in reply.read():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("etcd did not become healthy in time")

    def stop(self, *, wipe: bool = False) -> None:
        """Kill etcd; ``wipe`` removes its data (it comes back empty: leases gone)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        if wipe:
            shutil.rmtree(self.data_dir, ignore_errors=True)
