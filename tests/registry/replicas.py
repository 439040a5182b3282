"""Replicas of the reference service (``python -m cmd.server``) registered in a test etcd,
and a delaying TCP proxy that makes one of them slow."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import httpx

from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["DelayProxy", "Replica"]


class Replica:
    """One ``cmd.server`` process on fixed ports (a restart comes back on the same ones)."""

    def __init__(
        self,
        name: str,
        etcd_address: str,
        namespace: str,
        database_url: str,
        *,
        ttl: int = 3,
        advertise_host: str = "127.0.0.1",
    ) -> None:
        self.name = name
        self.http_port, self.grpc_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.http_port),
            "APP_SERVER__GRPC__HOST": "127.0.0.1",
            "APP_SERVER__GRPC__PORT": str(self.grpc_port),
            "WS_HOST": "127.0.0.1",
            "WS_PORT": "0",
            "DATABASE_URL": database_url,
            "APP_LOG__LEVEL": "WARNING",
            "APP_REGISTRY__ADDRESS": etcd_address,
            "APP_REGISTRY__NAMESPACE": namespace,
            "APP_REGISTRY__TTL": str(ttl),
            "APP_REGISTRY__DEREGISTER_DELAY": "1",
            "APP_REGISTRY__ADVERTISE_HOST": advertise_host,
        }
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    async def start(self, log_dir: Path) -> None:
        """Start and wait until ``/readyz`` answers 200 (the App registers right after)."""
        log = (log_dir / f"{self.name}.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cmd.server",
            "-conf",
            "configs/",
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=log,
        )
        log.close()
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise AssertionError(f"{self.name} exited with {self.proc.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    url = f"http://127.0.0.1:{self.http_port}/readyz"
                    if (await client.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} never became ready")

    async def terminate(self) -> int:
        """SIGTERM and wait for the graceful exit; returns the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 30)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class DelayProxy:
    """Forwards ``listen_host:port`` to ``target``, delaying every chunk sent to the target by
    ``delay`` seconds (pipelined: each chunk keeps its own due time)."""

    def __init__(self, listen_host: str, port: int, target: tuple[str, int], delay: float) -> None:
        self.listen = (listen_host, port)
        self.target = target
        self.delay = delay
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, *self.listen)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read_client() -> None:
            while chunk := await reader.read(65536):
                queue.put_nowait((time.monotonic() + self.delay, chunk))
            queue.put_nowait((0.0, b""))

        async def write_upstream() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    break
                await asyncio.sleep(max(due - time.monotonic(), 0))
                up_writer.write(chunk)
                await up_writer.drain()
            up_writer.close()

        async def pump_back() -> None:
            while chunk := await up_reader.read(65536):
                writer.write(chunk)
                await writer.drain()
            writer.close()

        tasks = [asyncio.create_task(c()) for c in (read_client, write_upstream, pump_back)]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)
        writer.close()
        up_writer.close()
