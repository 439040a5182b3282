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
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.services import free_port

# Each test starts the service as a subprocess (seconds each, mostly imports): out of a
# scaffolded project's default run, which tests the same service in-process with the kit.
pytestmark = pytest.mark.slow

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
        sys.executable,
        "-m",
        "cmd.server",
        "-conf",
        "configs/",
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{http_port}"
        await wait_ready(f"{base}/readyz", proc)
        async with httpx.AsyncClient(base_url=base) as client:
            created = await client.post(
                "/v1/orders", json={"customer_id": "c1", "amount_cents": 100}
            )
            assert created.status_code == 201
            order_id = created.json()["id"]
            assert (await client.get(f"/v1/orders/{order_id}")).json()["id"] == order_id
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
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
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "config.yaml" in result.stderr and "server.http.port" in result.stderr


def test_help_explains_the_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cmd.server", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "-conf" in result.stdout and "APP_SERVER__HTTP__PORT" in result.stdout


def test_pdb_and_stdlib_cmd_still_import_from_the_repo_root() -> None:
    code = "import cmd, pdb; assert cmd.Cmd in pdb.Pdb.__mro__; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr


# -- issue 8 items 12 and 14: every config mistake is one line and exit 2, before anything ---


def run_server(conf: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cmd.server", "-conf", str(conf)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def assert_one_config_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") <= 1, result.stderr  # one line
    assert result.stderr.startswith(f"config error: {expected}"), result.stderr


def test_item12_unknown_broker_option_in_yaml_is_a_config_error(tmp_path: Path) -> None:
    conf = tmp_path / "configs"
    conf.mkdir()
    (conf / "config.yaml").write_text("data:\n  broker:\n    options: {nope: 1}\n")
    assert_one_config_error(
        run_server(conf),
        f"{conf / 'config.yaml'}:3: data.broker.options.nope: "
        "unknown option 'nope'; valid: name, partitions",
    )


def test_item12_unknown_broker_option_from_env_names_the_variable() -> None:
    result = run_server(
        ROOT / "configs",
        APP_DATA__BROKER__KIND="kafka",
        APP_DATA__BROKER__OPTIONS__BOOTSTRAP_SERVER="127.0.0.1:1",
    )
    assert_one_config_error(
        result,
        "env APP_DATA__BROKER__OPTIONS__BOOTSTRAP_SERVER: data.broker.options.bootstrap_server: "
        "unknown option 'bootstrap_server' (did you mean 'bootstrap_servers'?); valid: ",
    )


def test_item12_bad_broker_option_value_is_a_config_error() -> None:
    result = run_server(ROOT / "configs", APP_DATA__BROKER__OPTIONS__PARTITIONS="0")
    assert_one_config_error(
        result,
        "env APP_DATA__BROKER__OPTIONS__PARTITIONS: data.broker.options.partitions: "
        "MemoryBroker: partitions must be an int between 1 and 65536, got 0",
    )


def test_a_broker_url_of_the_wrong_scheme_is_a_config_error_not_a_start_failure() -> None:
    result = run_server(
        ROOT / "configs",
        APP_DATA__BROKER__KIND="redis",
        APP_DATA__BROKER__OPTIONS__URL="http://cache.example:6379",
    )
    assert_one_config_error(
        result,
        "env APP_DATA__BROKER__OPTIONS__URL: data.broker.options.url: url must be a redis://, "
        "rediss:// or unix:// URL; its scheme is 'http', got 'http://cache.example:6379'",
    )


def test_item14_unknown_server_key_is_refused_at_start(tmp_path: Path) -> None:
    conf = tmp_path / "configs"
    conf.mkdir()
    (conf / "config.yaml").write_text("server:\n  http:\n    port: 8000\n    bogus: 1\n")
    assert_one_config_error(
        run_server(conf), f"{conf / 'config.yaml'}:4: server.http.bogus: unknown key 'bogus'"
    )


async def test_item14_hot_reload_refuses_what_a_restart_would(tmp_path: Path) -> None:
    conf = tmp_path / "configs"
    conf.mkdir()
    shipped = (ROOT / "configs" / "config.yaml").read_text()
    (conf / "config.yaml").write_text(shipped)
    http_port = free_port()
    env = {
        **os.environ,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(http_port),
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": "0",
        "WS_HOST": "127.0.0.1",
        "WS_PORT": "0",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cmd.server",
        "-conf",
        str(conf),
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    log: list[str] = []

    async def until(text: str) -> str:
        assert proc.stderr is not None
        while True:
            line = (await proc.stderr.readline()).decode()
            assert line, f"service exited before logging {text!r}:\n{''.join(log)}"
            log.append(line)
            if text in line:
                return line

    try:
        await wait_ready(f"http://127.0.0.1:{http_port}/readyz", proc)
        # A running-service edit that also changes the watched log.level: refused as a whole.
        edited = shipped.replace("    timeout: 30\n", "    timeout: 30\n    bogus: 1\n", 1)
        edited = edited.replace("  level: INFO", "  level: DEBUG")
        assert edited.count("bogus") == 1 and "level: DEBUG" in edited
        bogus_line = edited.splitlines().index("    bogus: 1") + 1
        tmp = conf / ".config.yaml.tmp"
        tmp.write_text(edited)
        tmp.replace(conf / "config.yaml")
        line = await asyncio.wait_for(until("server.http.bogus"), 30)
        assert "ERROR" in line and "keeping the previous values" in line
        assert f"{conf / 'config.yaml'}:{bogus_line}: server.http.bogus: unknown key" in line
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        rest = (await proc.stderr.read()).decode()
        assert "log level is now DEBUG" not in "".join(log) + rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
