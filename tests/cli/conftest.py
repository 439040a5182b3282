"""Shared helpers of the CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def service_env(tmp: Path, http_port: int, grpc_port: int) -> dict[str, str]:
    """Environment that runs the reference service on loopback ports, its DB under ``tmp``."""
    return {
        **os.environ,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(http_port),
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(grpc_port),
        "WS_HOST": "127.0.0.1",
        "WS_PORT": "0",  # any free port: these tests do not talk WebSocket
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'orders.db'}",
    }


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_for(
    check: Callable[[], bool], what: str, timeout: float = 60.0, alive: Callable[[], bool] = bool
) -> None:
    """Poll ``check`` (it talks to another process: no event to await) until true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise AssertionError(f"process died while waiting for {what}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def check_lint_and_types(project: Path, *paths: str) -> None:
    """``ruff check`` and ``mypy`` (strict) on ``project`` with its own pyproject settings.

    ``framework`` is put on ``MYPYPATH`` through a directory holding only a link to it: mypy
    cannot follow an editable install's import hook, and ``MYPYPATH=ROOT`` would also hand it
    this repository's ``tests`` and ``cmd`` packages instead of the project's.
    """
    targets = list(paths) or ["."]
    lint = subprocess.run(
        [PYTHON, "-m", "ruff", "check", "--no-cache", *targets],
        cwd=project, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert lint.returncode == 0, f"ruff in {project}:\n{lint.stdout}{lint.stderr}"
    stubs = project.parent / f".{project.name}-mypypath"
    stubs.mkdir(exist_ok=True)
    link = stubs / "framework"
    if not link.exists():
        link.symlink_to(ROOT / "framework", target_is_directory=True)
    types = subprocess.run(
        [PYTHON, "-m", "mypy", "--cache-dir", str(stubs / "cache"), *targets],
        cwd=project, capture_output=True, text=True, check=False, timeout=300,
        env={**os.environ, "MYPYPATH": str(stubs)},
    )  # fmt: skip
    assert types.returncode == 0, f"mypy in {project}:\n{types.stdout}{types.stderr}"
