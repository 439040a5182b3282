"""``pykratos new``: copy the reference service and rename it after the new project.

Every text file is renamed (``app_template`` -> the package, ``app-template`` -> the DNS name,
...); generated ``x_pb2.py`` files get their embedded descriptor re-encoded by
:mod:`framework.cli.pb2_rename`, so neither protoc nor grpcio-tools is needed. Everything is
built in a hidden staging directory beside the target and moved into place at the end, so a
failure leaves no half-made project behind.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from framework.cli.exceptions import CliError
from framework.cli.manifest import TEMPLATE_PACKAGE, iter_template_files
from framework.cli.names import ProjectNames, project_names
from framework.cli.pb2_rename import rename_pb2_source
from framework.cli.project_files import gitignore, pyproject, readme, setup_command
from framework.cli.source import installed_from
from framework.cli.template import template_root

__all__ = ["Project", "new_project", "rename_text", "target_path"]


#: OSErrors that the target path the user chose causes (exit 2, a usage error); any other
#: (a full disk, an I/O error) is a failure while copying (exit 1).
_PATH_ERRNOS = frozenset(
    {
        errno.ENAMETOOLONG,
        errno.EACCES,
        errno.EPERM,
        errno.EEXIST,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EROFS,
        errno.ELOOP,
        errno.ENOTEMPTY,
    }
)

_DOCKER_INSTALL_TEMPLATE = 'ARG INSTALL=".[all]"'
_DOCKER_INSTALL_PROJECT = 'ARG INSTALL="."'


@dataclass(frozen=True, slots=True)
class Project:
    """What ``pykratos new`` made."""

    names: ProjectNames
    path: Path
    source: str | None
    files: Sequence[Path] = field(default_factory=tuple)

    def summary(self) -> str:
        """Text printed after creation: where, and the next two commands."""
        setup = setup_command(self.source)
        return (
            f"created {self.names.raw} (package {self.names.package}) in {self.path}\n\n"
            f"  cd {self.path}\n"
            f"  {setup} && .venv/bin/python -m cmd.server -conf configs/\n"
            f"  {setup} && .venv/bin/python -m pytest\n"
        )


def rename_text(text: str, names: ProjectNames) -> str:
    """Rewrite every spelling of the template's name in ``text`` for ``names``."""
    replacements = (
        # protoc's mangled module aliases: app_template/x.proto -> app__template_dot_x__pb2
        ("app__template_dot_", names.package.replace("_", "__") + "_dot_"),
        (TEMPLATE_PACKAGE, names.package),
        ("app-template", names.dns),
        ("APP_TEMPLATE", names.env),
        ("App Template", names.title),
    )
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def target_path(relative: Path, names: ProjectNames) -> Path:
    """Where a template file goes in the new project.

    ``app_template/...`` becomes ``<package>/...`` and the template's tests
    (``tests/app_template/...``) become ``tests/<package>/...``: the same depth, so paths the
    tests compute from their own location (the project root) stay right.
    """
    return Path(*(names.package if part == TEMPLATE_PACKAGE else part for part in relative.parts))


def _check_target(target: Path) -> None:
    if target.is_file() or target.is_symlink():
        raise CliError(f"{target} exists and is not a directory", exit_code=2)
    if target.is_dir() and any(target.iterdir()):
        raise CliError(
            f"{target} is not empty; choose a new or empty directory (--dir PATH)", exit_code=2
        )


def _rename_file(relative: Path, text: str, names: ProjectNames) -> str:
    if relative.name.endswith("_pb2.py"):
        prefix = f"{TEMPLATE_PACKAGE}/"

        def rename_path(path: str) -> str:
            return names.package + "/" + path[len(prefix) :] if path.startswith(prefix) else path

        return rename_pb2_source(text, rename_path, lambda t: rename_text(t, names))
    text = rename_text(text, names)
    if relative.as_posix() == "deploy/Dockerfile":
        text = _project_dockerfile(text)
    return text


def _copy_template(template: Path, staging: Path, names: ProjectNames) -> None:
    """Copy the template into ``staging``, renamed for ``names``."""
    for relative in iter_template_files(template):
        destination = staging / target_path(relative, names)
        destination.parent.mkdir(parents=True, exist_ok=True)
        data = (template / relative).read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            destination.write_bytes(data)  # binary: copied as is
        else:
            destination.write_text(_rename_file(relative, text, names), encoding="utf-8")
        shutil.copymode(template / relative, destination)


def _project_dockerfile(text: str) -> str:
    # The template's Dockerfile installs pykratos itself (the repository is the context); a
    # project installs itself, and pykratos comes in as its dependency.
    if _DOCKER_INSTALL_TEMPLATE not in text:
        raise CliError(f"template deploy/Dockerfile lacks the line {_DOCKER_INSTALL_TEMPLATE}")
    return text.replace(_DOCKER_INSTALL_TEMPLATE, _DOCKER_INSTALL_PROJECT)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_project(raw_name: str, directory: Path | None = None) -> Project:
    """Create the project ``raw_name`` in ``directory`` (default ``./raw_name``).

    Raises :class:`CliError` for an invalid name or a target that is not a missing or empty
    directory (exit status 2), a missing template (1), and for any :class:`OSError` while
    creating it, naming the path: exit status 2 when the target path is the cause (too long,
    permission denied, a file on the way), else 1 (a full disk, an I/O error).
    """
    names = project_names(raw_name)
    target = (directory or Path.cwd() / raw_name).resolve()
    try:
        return _create(names, target)
    except OSError as exc:
        where = exc.filename if exc.filename is not None else target
        raise CliError(
            f"cannot create the project in {target}: {exc.strerror or exc}: {where}",
            exit_code=2 if exc.errno in _PATH_ERRNOS else 1,
        ) from None


def _create(names: ProjectNames, target: Path) -> Project:
    _check_target(target)
    template = template_root()
    source = installed_from()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{names.package}-", dir=target.parent))
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; a project dir is not private
        _copy_template(template, staging, names)
        (staging / "pyproject.toml").write_text(pyproject(names))
        (staging / "README.md").write_text(readme(names, source))
        (staging / ".gitignore").write_text(gitignore())
        _check_target(target)  # still missing or empty: nobody wrote there meanwhile
        if target.is_dir():
            target.rmdir()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file())
    return Project(names, target, source, tuple(files))
