"""Where a proto file sits in a project and which Python module it becomes."""

from __future__ import annotations

import keyword
import re
from pathlib import Path, PurePosixPath

from framework.cli.exceptions import CliError

__all__ = [
    "check_proto_name",
    "ensure_packages",
    "find_project_root",
    "module_of",
    "relative_proto",
]

#: A Python package/module name as ``pykratos new`` makes them (see
#: :func:`framework.cli.names.project_names`): lowercase ASCII snake case.
_SEGMENT_RE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")


def find_project_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding a ``pyproject.toml``.

    Falls back to the current directory: protoc then runs with ``-I .``, which is right when
    the command is run from the project root of a project without a ``pyproject.toml``.
    """
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    return Path.cwd().resolve()


def relative_proto(proto: Path, root: Path) -> Path:
    """``proto`` relative to ``root``; the name protoc records and imports use."""
    resolved = proto.resolve()
    try:
        return resolved.relative_to(root.resolve())
    except ValueError:
        raise CliError(
            f"{proto} is not inside the project root {root}; pass --root with a directory that "
            "contains it",
            exit_code=2,
        ) from None


def check_proto_name(proto_name: str) -> None:
    """Refuse a proto whose generated modules could not be imported.

    ``proto_name`` is the path relative to the project root (``shop/api/billing/v1/x.proto``):
    protoc makes every directory a package and the stem a module (``shop.api.billing.v1.
    x_pb2``), so each must be a lowercase snake-case identifier (a letter, then letters,
    digits or single ``_``) and not a Python keyword (``class``, ``def``, ...).

    Raises:
        CliError: exit status 2, naming the offending part.
    """
    path = PurePosixPath(proto_name)
    named = [*(("directory", part) for part in path.parent.parts), ("file name", path.stem)]
    for what, part in named:
        if not _SEGMENT_RE.match(part):
            raise CliError(
                f"{what} {part!r} of {proto_name} is not a valid Python module name: the "
                "generated code imports it, so use lowercase letters, digits and single '_', "
                "starting with a letter (e.g. 'order_item')",
                exit_code=2,
            )
        if keyword.iskeyword(part) or keyword.issoftkeyword(part):
            raise CliError(
                f"{what} {part!r} of {proto_name} is a Python keyword, which the generated "
                "imports cannot use; pick another name",
                exit_code=2,
            )


def module_of(proto_name: str, suffix: str) -> str:
    """Dotted module protoc generates for ``a/b/x.proto``: ``a.b.x`` + ``suffix``."""
    stem = proto_name.removesuffix(".proto")
    return stem.replace("/", ".") + suffix


def ensure_packages(directory: Path, root: Path) -> list[Path]:
    """Create a missing ``__init__.py`` in ``directory`` and each parent below ``root``.

    Generated code imports ``pkg.api.x.v1.x_pb2``, so every directory on the way must be a
    regular package (namespace packages would work at run time but not for mypy or pytest).
    Returns the files created.
    """
    created: list[Path] = []
    directory = directory.resolve()
    root = root.resolve()
    current = directory
    while current != root and root in current.parents:
        init = current / "__init__.py"
        if not init.exists():
            init.write_text("")
            created.append(init)
        current = current.parent
    return created
