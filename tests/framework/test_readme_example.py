"""The README's first example, run as a user would (issue 8, item 20): a server that cannot
start makes it exit non-zero with a clear log line (before, it exited 0 and said nothing)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def first_app_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**App and servers.**") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no python example in the README's App section"
    return match.group(1)


def test_item20_readme_example_exits_non_zero_and_logs_when_its_port_is_taken() -> None:
    code = first_app_example()
    assert 'HttpServer("0.0.0.0", 8000' in code
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-c", code.replace("8000", str(port))],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert re.search(
        rf"ERROR +pykratos\.app: greeter failed to start: .*cannot bind 0\.0\.0\.0:{port}: "
        r"Address already in use",
        done.stderr,
    ), done.stderr
    assert "Traceback" not in done.stderr
