"""What the project template is made of; stdlib only, so ``setup.py`` can load it by path.

The reference service in the repository root *is* the template. These paths (relative to the
repository root) are copied by ``pykratos new``, and are packaged into the wheel under
``framework/cli/_template/`` by the build hook in ``setup.py``, because the distribution itself
only ships the ``framework`` package (a top-level ``cmd`` package in site-packages would shadow
the standard library's ``cmd`` module for the whole environment).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "IGNORED_PATTERNS",
    "PACKAGED_TEMPLATE_DIR",
    "TEMPLATE_PACKAGE",
    "TEMPLATE_PARTS",
    "iter_template_files",
]

#: The reference service's Python package, renamed by ``pykratos new``.
TEMPLATE_PACKAGE = "app_template"

#: Paths copied from the repository root (directories are copied recursively).
TEMPLATE_PARTS: tuple[str, ...] = (
    "app_template",
    "cmd",
    "configs",
    "deploy",
    "tests/app_template",
    "tests/__init__.py",
    "tests/services.py",
)

#: Directory, inside the ``framework.cli`` package, that holds the template in a wheel.
PACKAGED_TEMPLATE_DIR = "_template"

#: File and directory names never copied (caches, build output, editor droppings).
IGNORED_PATTERNS: tuple[str, ...] = (
    "__pycache__",
    "*.pyc",
    "*.pyo",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "*.egg-info",
    ".DS_Store",
    "*.swp",
    "*.db",
    "*.db-journal",
    "*~",
)


def _ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED_PATTERNS)


def iter_template_files(root: Path) -> Iterator[Path]:
    """Yield every template file under ``root`` as a path relative to ``root``, sorted.

    Missing optional parts (``tests/services.py`` in a repo that has none) are skipped.
    """
    for part in TEMPLATE_PARTS:
        start = root / part
        if start.is_file():
            yield Path(part)
        elif start.is_dir():
            yield from _walk(root, start)


def _walk(root: Path, directory: Path) -> Iterator[Path]:
    for entry in sorted(directory.iterdir()):
        if _ignored(entry.name):
            continue
        if entry.is_dir():
            yield from _walk(root, entry)
        elif entry.is_file():
            yield entry.relative_to(root)
