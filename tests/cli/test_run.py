"""``pykratos run``: runs cmd.server, forwards signals and the exit status, reloads."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from framework.cli.exceptions import CliError
from framework.cli.run import find_service_root
from tests.cli.conftest import PYTHON, ROOT, wait_for

# A stand-in service: records its pid and argv, exits 3 on SIGTERM/SIGINT.
FAKE_SERVER = """\
import os, signal, sys, time
from pathlib import Path

def stop(signum, frame):
    with open("stopped.txt", "a") as f:
        f.write(f"{os.getpid()} {signum}\\n")
    sys.exit(3)

signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
with open("pids.txt", "a") as f:
    f.write(f"{os.getpid()} {' '.join(sys.argv[1:])}\\n")
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    time.sleep(0.05)
"""


@pytest.fixture
def fake_project(tmp_path: Path) -> Path:
    (tmp_path / "cmd" / "server").mkdir(parents=True)
    (tmp_path / "cmd" / "__init__.py").write_text("")
    (tmp_path / "cmd" / "server" / "__init__.py").write_text("")
    (tmp_path / "cmd" / "server" / "__main__.py").write_text(FAKE_SERVER)
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "code.py").write_text("X = 1\n")
    return tmp_path


def _pids(project: Path) -> list[str]:
    path = project / "pids.txt"
    return path.read_text().splitlines() if path.exists() else []


def _start(project: Path, *args: str, stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [PYTHON, "-m", "framework.cli.main", "run", *args],
        cwd=project / "svc",  # a subdirectory: the project root is found above it
        env=env,
        stderr=stderr,
        text=True,
    )


def test_finds_the_project_root_or_explains(tmp_path: Path, fake_project: Path) -> None:
    assert find_service_root(fake_project / "svc") == fake_project.resolve()
    with pytest.raises(CliError, match=r"no cmd/server/__main__\.py"):
        find_service_root(Path("/"))


@pytest.mark.parametrize("command", [["docs", "out"], ["run"]])
def test_outside_a_project_is_a_usage_error(
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from framework.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith("pykratos: error: no cmd/server/__main__.py in ") and err.count("\n") == 1
    assert "run this inside a pykratos project" in err
    assert not (tmp_path / "out").exists()


def test_forwards_sigterm_once_and_returns_the_exit_status(fake_project: Path) -> None:
    proc = _start(fake_project, "-conf", "other/")
    try:
        wait_for(
            lambda: bool(_pids(fake_project)), "the service", alive=lambda: proc.poll() is None
        )
        pid, argv = _pids(fake_project)[0].split(" ", 1)
        assert argv == "-conf other/"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 3
    finally:
        proc.kill()
        proc.wait()
    assert (fake_project / "stopped.txt").read_text().split() == [pid, str(int(signal.SIGTERM))]


def test_reload_restarts_on_a_source_change(fake_project: Path) -> None:
    proc = _start(fake_project, "--reload", "--grace", "5")
    try:
        wait_for(
            lambda: bool(_pids(fake_project)), "the service", alive=lambda: proc.poll() is None
        )
        first = _pids(fake_project)[0].split()[0]
        assert _pids(fake_project)[0].endswith("-conf configs/")
        code = fake_project / "svc" / "code.py"
        # The watcher may start just after the child: touch until the restart is seen.
        deadline = time.monotonic() + 30
        n = 0
        while len(_pids(fake_project)) < 2 and time.monotonic() < deadline:
            n += 1
            code.write_text(f"X = {n}\n")
            time.sleep(0.5)
        pids = _pids(fake_project)
        assert len(pids) >= 2, "no restart after editing a .py file"
        assert (fake_project / "stopped.txt").read_text().split()[0] == first  # old one stopped
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 3
        assert "changed, restarting" in (proc.stderr.read() if proc.stderr else "")
    finally:
        proc.kill()
        proc.wait()


def test_reload_reports_a_service_that_failed_to_start_and_waits_for_a_fix(
    fake_project: Path,
) -> None:
    """Item 26: the child's exit status is reported, then the next change starts it again."""
    main = fake_project / "cmd" / "server" / "__main__.py"
    main.write_text(
        "import sys\nprint('config error: nope', file=sys.stderr)\nsys.exit(2)\n" + FAKE_SERVER
    )
    log = fake_project / "run.log"
    with log.open("w") as err:
        proc = _start(fake_project, "--reload", "--grace", "5", stderr=err)
    try:
        wait_for(
            lambda: "exited with status 2" in log.read_text(),
            "the exit report",
            timeout=30,
            alive=lambda: proc.poll() is None,
        )
        assert "waiting for a change to restart it" in log.read_text()
        assert _pids(fake_project) == []  # it really never got going
        # The fix: the service starts again on the next change (the watcher may start just
        # after the failed child: rewrite until the restart is seen).
        deadline = time.monotonic() + 30
        while not _pids(fake_project) and time.monotonic() < deadline:
            main.write_text(FAKE_SERVER)
            time.sleep(0.5)
        assert _pids(fake_project), "no restart after fixing the service"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 3
        # Only the unexpected exit was reported: the stop we asked for is no news.
        assert log.read_text().count("exited with") == 1
    finally:
        proc.kill()
        proc.wait()
