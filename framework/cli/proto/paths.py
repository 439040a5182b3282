"""Where a proto file sits in a project and which Python module it becomes."""

from __future__ import annotations

from pathlib import Path

from framework.cli.exceptions import CliError

__all__ = ["ensure_packages", "find_project_root", "module_of", "relative_proto"]


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
            "contains it"
        ) from None


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
