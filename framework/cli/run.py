"""``pykratos run``: run the current project's service, optionally restarting on changes.

The service runs as ``python -m cmd.server -conf DIR`` in a child process (its own process
group, so a terminal's Ctrl-C reaches it once, through us). SIGINT/SIGTERM/SIGHUP are
forwarded; the exit status is the child's (``128 + signal`` when a signal killed it). With
``reload``, the project tree is watched (watchfiles) and the child is stopped with SIGTERM
(SIGKILL after ``grace`` seconds) and started again on every change to a ``.py``, ``.yaml``,
``.yml``, ``.json``, ``.toml`` or ``.proto`` file. A child that exits on its own meanwhile (it
failed to start, or crashed) is reported with its exit status, and the next change starts it
again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from watchfiles import Change, DefaultFilter, watch

from framework.cli.exceptions import CliError

__all__ = ["WATCHED_EXTENSIONS", "find_service_root", "run_service"]

WATCHED_EXTENSIONS = (".py", ".yaml", ".yml", ".json", ".toml", ".proto")
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def find_service_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` with ``cmd/server/__main__.py``."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / "cmd" / "server" / "__main__.py").is_file():
            return candidate
    raise CliError(
        f"no cmd/server/__main__.py in {start} or above: run this inside a pykratos project "
        "(create one with: pykratos new NAME)",
        exit_code=2,  # a usage error, like every other wrong invocation
    )


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _describe_exit(returncode: int) -> str:
    """``status 2`` / ``status 137 (killed by SIGKILL)`` for a ``Popen.returncode``."""
    status = f"status {_exit_status(returncode)}"
    if returncode < 0:
        try:
            return f"{status} (killed by {signal.Signals(-returncode).name})"
        except ValueError:
            return f"{status} (killed by signal {-returncode})"
    return status


class _Supervisor:
    """Owns the child process and the signal handlers that forward to it."""

    def __init__(
        self, command: Sequence[str], cwd: Path, grace: float, report_exits: bool = False
    ) -> None:
        self.command = list(command)
        self.cwd = cwd
        self.grace = grace
        # With --reload, nobody waits on the child between changes: a watcher thread per child
        # says when it exits on its own, or the user would stare at a silent terminal.
        self.report_exits = report_exits
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self._previous: dict[int, object] = {}
        self._stopped_by_us: set[int] = set()  # pids we terminated: their exit is no news

    def __enter__(self) -> _Supervisor:
        for sig in _FORWARDED:
            self._previous[sig] = signal.signal(sig, self._forward)
        return self

    def __exit__(self, *_: object) -> None:
        # Normally the child has exited by now; on an error (e.g. the watcher failed) it must
        # not outlive us: it runs in its own process group, out of reach of the terminal.
        self._stop_child()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping.set()
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def start(self) -> None:
        # process_group=0: the child leaves the terminal's foreground group, so Ctrl-C is
        # delivered to us only and forwarded exactly once (a second SIGINT may mean "force").
        child = subprocess.Popen(self.command, cwd=self.cwd, process_group=0)
        self.child = child
        if self.report_exits:
            threading.Thread(
                target=self._report_exit, args=(child,), name="pykratos-run-exit", daemon=True
            ).start()

    def _report_exit(self, child: subprocess.Popen[bytes]) -> None:
        returncode = child.wait()
        if child.pid in self._stopped_by_us or self.stopping.is_set():
            return
        print(
            f"pykratos: the service exited with {_describe_exit(returncode)}; waiting for a "
            "change to restart it (Ctrl-C to quit)",
            file=sys.stderr,
            flush=True,
        )

    def wait(self) -> int:
        assert self.child is not None
        return _exit_status(self.child.wait())

    def _stop_child(self) -> None:
        """SIGTERM the child if it runs; SIGKILL it after ``grace`` seconds."""
        child = self.child
        if child is not None and child.poll() is None:
            self._stopped_by_us.add(child.pid)
            child.terminate()
            try:
                child.wait(self.grace)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def restart(self) -> None:
        self._stop_child()
        if not self.stopping.is_set():
            self.start()


class _SourceFilter(DefaultFilter):
    """watchfiles' default ignores (.git, .venv, caches) plus an extension allow-list."""

    def __call__(self, change: Change, path: str) -> bool:
        return path.endswith(WATCHED_EXTENSIONS) and super().__call__(change, path)


def run_service(
    conf: str = "configs/",
    *,
    reload: bool = False,
    cwd: Path | None = None,
    grace: float = 15.0,
    python: str = sys.executable,
) -> int:
    """Run the service of the project containing ``cwd``; return the exit status.

    ``conf`` is passed to the service as ``-conf`` (relative to the project root). ``grace``
    is how long a reload waits for the old process to stop after SIGTERM before SIGKILL.
    """
    root = find_service_root(cwd or Path.cwd())
    command = [python, "-m", "cmd.server", "-conf", conf]
    with _Supervisor(command, root, grace, report_exits=reload) as supervisor:
        supervisor.start()
        if not reload:
            return supervisor.wait()
        for changes in watch(
            root,
            watch_filter=_SourceFilter(),
            stop_event=supervisor.stopping,
            raise_interrupt=False,
        ):
            if supervisor.stopping.is_set():
                break
            changed = sorted({Path(path).name for _, path in changes})
            print(f"pykratos: {', '.join(changed)} changed, restarting", file=sys.stderr)
            supervisor.restart()
        return supervisor.wait()
