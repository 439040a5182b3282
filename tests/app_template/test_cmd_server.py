"""``python -m cmd.server -conf configs/`` as a user runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]


async def wait_ready(url: str, proc: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if proc.returncode is not None:
                raise AssertionError(f"service exited with {proc.returncode}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never became ready")


async def test_runs_on_embedded_defaults_and_stops_on_sigterm(tmp_path: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(http_port),
        "APP_SERVER__GRPC__PORT": str(grpc_port),  # the env-override path, not a placeholder
        "APP_SERVER__GRPC__HOST": "127.0.0.1",
        "WS_HOST": "127.0.0.1",
        "WS_PORT": "0",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cmd.server", "-conf", "configs/", cwd=ROOT, env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{http_port}"
        await wait_ready(f"{base}/readyz", proc)
        async with httpx.AsyncClient(base_url=base) as client:
            created = await client.post("/v1/orders",
                                        json={"customer_id": "c1", "amount_cents": 100})
            assert created.status_code == 201
            order_id = created.json()["id"]
            assert (await client.get(f"/v1/orders/{order_id}")).json()["id"] == order_id
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        assert proc.stderr is not None
        log = (await proc.stderr.read()).decode()
        assert "stopped" in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_bad_config_names_file_and_key(tmp_path: Path) -> None:
    conf = tmp_path / "configs"
    conf.mkdir()
    (conf / "config.yaml").write_text("server:\n  http:\n    port: not-a-port\n")
    result = subprocess.run(
        [sys.executable, "-m", "cmd.server", "-conf", str(conf)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "config.yaml" in result.stderr and "server.http.port" in result.stderr


def test_help_explains_the_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cmd.server", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0
    assert "-conf" in result.stdout and "APP_SERVER__HTTP__PORT" in result.stdout


def test_pdb_and_stdlib_cmd_still_import_from_the_repo_root() -> None:
    code = "import cmd, pdb; assert cmd.Cmd in pdb.Pdb.__mro__; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
