"""``pykratos proto server``: a service-layer class per proto service, every RPC unimplemented.

Like ``kratos proto server``: the class (see :mod:`framework.cli.proto.service_code`) derives
from the generated servicer and every method raises ``framework.errors.NotImplemented_`` until
filled in. A module that already exists is the user's: only the methods of RPCs added to the
proto since are appended to its class (see :mod:`framework.cli.proto.service_update`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from framework.cli.exceptions import CliError
from framework.cli.proto.paths import (
    check_proto_name,
    ensure_packages,
    find_project_root,
    relative_proto,
)
from framework.cli.proto.protoc import load_descriptors
from framework.cli.proto.service_code import render_service, snake_case
from framework.cli.proto.service_update import add_missing_methods

__all__ = ["ServerFiles", "generate_server"]


@dataclass(slots=True)
class ServerFiles:
    """What :func:`generate_server` did, per service module."""

    created: list[Path] = field(default_factory=list)
    #: existing module -> names of the methods appended to its class
    updated: dict[Path, list[str]] = field(default_factory=dict)
    #: existing modules that already had a method for every RPC
    unchanged: list[Path] = field(default_factory=list)
    #: ``__init__.py`` files created on the way
    packages: list[Path] = field(default_factory=list)


def generate_server(
    proto: Path,
    target: Path,
    *,
    root: Path | None = None,
    includes: Sequence[Path] = (),
    force: bool = False,
) -> ServerFiles:
    """Write ``target/<service_snake>.py`` for every service in ``proto``.

    A module that does not exist is written whole. One that exists is the user's: the methods
    of RPCs it lacks are appended to its servicer class and everything else is left as it was
    (running again changes nothing; methods of RPCs removed from the proto are kept). ``force``
    overwrites existing modules instead. Raises :class:`CliError` when ``proto`` is missing,
    declares no service, or an existing module has no servicer class to extend.
    """
    if not proto.is_file():
        raise CliError(f"{proto} does not exist (create one with: pykratos proto add {proto})")
    root = (root or find_project_root(proto.parent)).resolve()
    name = relative_proto(proto, root).as_posix()
    check_proto_name(name)  # before protoc writes anything
    file, files = load_descriptors(root, name, includes)
    if not file.service:
        raise CliError(f"{proto} declares no service")
    # Compute every change first: a failure on one module must not leave the others half-done.
    result = ServerFiles()
    writes: dict[Path, str] = {}
    for service in file.service:
        path = target / f"{snake_case(service.name)}.py"
        if force or not path.exists():
            writes[path] = render_service(file, service, files)
            result.created.append(path)
            continue
        source, added = add_missing_methods(path, path.read_text(), file, service, files)
        if added:
            writes[path] = source
            result.updated[path] = added
        else:
            result.unchanged.append(path)
    target.mkdir(parents=True, exist_ok=True)
    for path, text in writes.items():
        path.write_text(text)
    result.packages = ensure_packages(target, root)
    return result
