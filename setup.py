"""Build hook: ship the project template inside the wheel (pyproject.toml holds the metadata).

The reference service (app_template/, cmd/, configs/, deploy/, tests/app_template/) lives at
the repository root, outside the ``framework`` package, and must stay there: it is a runnable
project, and a top-level ``cmd`` package installed into site-packages would shadow the
standard library's ``cmd`` module. ``build_py`` therefore copies it into
``framework/cli/_template/`` of the build directory, so a regular (non-editable) install of
pykratos can still run ``pykratos new`` offline. An editable install reads the template from
the repository root instead (see framework/cli/template.py), so nothing is copied then.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _load_manifest() -> ModuleType:
    # Loaded by path: importing framework.cli would import framework (and its dependencies),
    # which are not installed in the isolated build environment.
    path = ROOT / "framework" / "cli" / "manifest.py"
    spec = importlib.util.spec_from_file_location("_pykratos_template_manifest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithTemplate(build_py):  # type: ignore[misc]
    """``build_py`` that also copies the project template into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        manifest = _load_manifest()
        target = Path(self.build_lib) / "framework" / "cli" / manifest.PACKAGED_TEMPLATE_DIR
        if target.exists():
            shutil.rmtree(target)
        files = list(manifest.iter_template_files(ROOT))
        if not any(part.parts[0] == manifest.TEMPLATE_PACKAGE for part in files):
            raise RuntimeError(f"project template not found under {ROOT}: cannot build pykratos")
        for relative in files:
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, destination)


setup(cmdclass={"build_py": BuildPyWithTemplate})
