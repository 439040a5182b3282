"""The README's "Testing a service" example runs, through the pytest plugin, as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Testing a service") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no python example in the README's testing section"
    return match.group(1)


def test_readme_testing_example_passes(tmp_path: Path) -> None:
    test_file = tmp_path / "test_readme_example.py"
    test_file.write_text(_example())
    installed = any(ep.name == "pykratos" for ep in entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "framework.testing.plugin"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin,
         "--rootdir", str(tmp_path), "-o", "asyncio_mode=auto",
         "-o", "asyncio_default_fixture_loop_scope=function", str(test_file)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "5 passed" in out, out[-4000:]
