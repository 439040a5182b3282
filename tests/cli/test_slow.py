"""Slow end-to-end checks (fresh virtualenvs and pip installs; the pip cache is used).

- The Dockerfile's steps, executed by hand: no Docker engine runs here, so each instruction
  is replayed on the host under a temporary root (``/opt/venv`` -> ``<tmp>/root/opt/venv``).
- ``pykratos new`` from a non-editable install, then the new project's README commands in a
  fresh virtualenv: its tests pass and ``python -m cmd.server -conf configs/`` serves /healthz.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.conftest import ROOT, http_get, service_env, wait_for
from tests.services import free_port

# Fresh virtualenvs and pip installs: minutes, not the suite's 120 s per-test default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BASE_PYTHON = Path(getattr(sys, "_base_executable", sys.executable))
STOP_TIMEOUT = 10


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _python_shim(tmp: Path) -> Path:
    """A directory whose ``python`` is the base interpreter (what the image's python is)."""
    shim = tmp / "shim"
    shim.mkdir()
    (shim / "python").symlink_to(BASE_PYTHON)
    return shim


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(
        r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), value
    ).strip('"')


def test_dockerfile_steps_work_by_hand(tmp_path: Path) -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    ignore = [
        line.strip()
        for line in (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    fake_root = tmp_path / "root"
    roots = sorted(set(re.findall(r"(?<![\w.$/-])(/(?:opt|src|out|app))\b", dockerfile)))
    assert roots, "the Dockerfile uses no absolute path?"
    pattern = re.compile(r"(?<![\w.$/-])(" + "|".join(map(re.escape, roots)) + r")\b")

    def mapped(text: str) -> str:
        return pattern.sub(lambda m: f"{fake_root}{m.group(1)}", text)

    base_env = {**_clean_env(), "PATH": f"{_python_shim(tmp_path)}:{os.environ['PATH']}"}
    env = dict(base_env)
    args: dict[str, str] = {}
    cwd = fake_root
    command: list[str] | None = None
    for keyword, rest in _instructions(dockerfile):
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default.strip('"')
            env[name] = args[name]
        elif keyword == "FROM":
            env = {**base_env, **args}
            cwd = fake_root
        elif keyword == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = mapped(_expand(value, env))
            env.pop("PIP_NO_CACHE_DIR", None)  # keep the pip cache: the test must be fast
        elif keyword == "WORKDIR":
            cwd = Path(mapped(rest))
            cwd.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            parts = [p for p in shlex.split(rest) if not p.startswith("--chown")]
            from_stage = parts[0].startswith("--from=")
            source, dest = parts[-2], parts[-1]
            src = Path(mapped(source)) if from_stage else ROOT / source
            dst = Path(mapped(dest)) if dest.startswith("/") else cwd / dest
            if src.resolve() == dst.resolve():
                continue  # one root serves every stage: already there
            shutil.copytree(
                src,
                dst,
                dirs_exist_ok=True,
                symlinks=True,
                ignore=lambda d, names: [
                    n for n in names if any(fnmatch.fnmatch(n, p.split("/")[-1]) for p in ignore)
                ],
            )
        elif keyword == "RUN":
            done = subprocess.run(
                ["sh", "-c", mapped(rest)],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=540,
                check=False,
            )
            assert done.returncode == 0, f"RUN {rest}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        elif keyword == "CMD":
            command = json.loads(rest)
    assert command is not None

    http_port, grpc_port = free_port(), free_port()
    run_env = {**env, **service_env(tmp_path, http_port, grpc_port), "PATH": env["PATH"]}
    run_env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(command, cwd=cwd, env=run_env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{http_port}/healthz"
        wait_for(lambda: http_get(url)[0] == 200, url, alive=lambda: proc.poll() is None)
        # The service ran from the image's virtualenv and workdir, not from the repository.
        assert shutil.which("python", path=run_env["PATH"]).startswith(str(fake_root))  # type: ignore[union-attr]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_TIMEOUT + 10) == 0
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert "Traceback" not in err, err[-3000:]


def test_new_project_in_a_fresh_venv(tmp_path: Path) -> None:
    started = time.monotonic()
    env = _clean_env()
    tool_venv = tmp_path / "tool-venv"
    subprocess.run([BASE_PYTHON, "-m", "venv", tool_venv], check=True, env=env)
    # Non-editable, no extras: the template must come from the wheel, offline, no protoc.
    pip = subprocess.run(
        [tool_venv / "bin" / "pip", "install", "-q", str(ROOT)],
        capture_output=True, text=True, env=env, timeout=540, check=False,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    project = tmp_path / "demo-svc"
    new = subprocess.run(
        [tool_venv / "bin" / "pykratos", "new", "demo-svc", "--dir", str(project)],
        cwd=tmp_path, capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert new.returncode == 0, new.stderr
    where = "import framework.cli.template as t; print(t.template_root())"
    packaged = subprocess.run(
        [tool_venv / "bin" / "python", "-c", where],
        cwd=tmp_path, capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert "site-packages" in packaged.stdout  # really the wheel's copy

    # The README's own commands: set up + test, then set up + run (setup already done).
    readme = (project / "README.md").read_text().splitlines()
    setup_and_run, setup_and_test = [
        line for line in readme if line.startswith("python3 -m venv .venv")
    ]
    shim = _python_shim(tmp_path)
    shell_env = {**env, "PATH": f"{shim}:{env['PATH']}"}
    (shim / "python3").symlink_to(BASE_PYTHON)
    tested = subprocess.run(
        ["sh", "-c", setup_and_test + " -q -p no:cacheprovider"],
        cwd=project, capture_output=True, text=True, env=shell_env, timeout=540, check=False,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-4000:]
    assert " passed" in tested.stdout

    run_command = setup_and_run.split(" && ")[-1]
    assert run_command == ".venv/bin/python -m cmd.server -conf configs/"
    http_port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        shlex.split(run_command),
        cwd=project,
        env={
            k: v
            for k, v in service_env(tmp_path, http_port, grpc_port).items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV")
        },
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{http_port}/healthz"
        wait_for(lambda: http_get(url)[0] == 200, url, alive=lambda: proc.poll() is None)
        assert http_get(f"http://127.0.0.1:{http_port}/readyz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_TIMEOUT + 10) == 0
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert "Traceback" not in err, err[-3000:]
    print(f"fresh-venv scaffold round trip: {time.monotonic() - started:.0f}s")
