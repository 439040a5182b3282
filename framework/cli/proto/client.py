"""``pykratos proto client``: Python messages, gRPC stubs, ``.pyi`` and error helpers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from framework.cli.exceptions import CliError
from framework.cli.proto.errors_gen import error_enums, render_errors_module
from framework.cli.proto.grpc_stub import render_grpc_stub
from framework.cli.proto.paths import (
    check_proto_name,
    ensure_packages,
    find_project_root,
    relative_proto,
)
from framework.cli.proto.protoc import load_descriptors

__all__ = ["PB2_STUB_HEADER", "generate_client"]

#: First line of every ``x_pb2.pyi``: protoc's stubs leave type arguments out (``_Mapping``) and,
#: without ``types-protobuf``, subclass an untyped ``Message``; strict mypy must not report
#: generated code, while the types it declares are still used.
PB2_STUB_HEADER = "# mypy: ignore-errors\n"


def generate_client(
    proto: Path, *, root: Path | None = None, includes: Sequence[Path] = ()
) -> list[Path]:
    """Generate ``x_pb2.py``, ``x_pb2.pyi``, ``x_pb2_grpc.py``, ``x_pb2_grpc.pyi`` (and
    ``x_errors.py``) next to it.

    ``x_pb2_grpc.pyi`` (see :mod:`framework.cli.proto.grpc_stub`) and the first line of
    ``x_pb2.pyi`` make the generated code pass ``mypy --strict``.

    protoc runs with ``-I root`` (default: the nearest directory above ``proto`` holding a
    ``pyproject.toml``), so generated imports read ``from pkg.api.x.v1 import x_pb2`` and work
    from the project root without edits; missing ``__init__.py`` files on the way are created.
    ``x_errors.py`` is written only when the file declares an ``...ErrorReason`` enum (see
    :mod:`framework.cli.proto.errors_gen`). Returns the files written.
    """
    if not proto.is_file():
        raise CliError(f"{proto} does not exist (create one with: pykratos proto add {proto})")
    root = (root or find_project_root(proto.parent)).resolve()
    name = relative_proto(proto, root).as_posix()
    check_proto_name(name)  # before protoc writes anything
    # One protoc run: the descriptors (for the error enums and the gRPC stub) and the code.
    file, files = load_descriptors(
        root, name, includes, ["--python_out=.", "--pyi_out=.", "--grpc_python_out=."]
    )
    directory = root / Path(name).parent
    stem = Path(name).stem
    messages_stub = directory / f"{stem}_pb2.pyi"
    messages_stub.write_text(PB2_STUB_HEADER + messages_stub.read_text())
    grpc_stub = directory / f"{stem}_pb2_grpc.pyi"
    grpc_stub.write_text(render_grpc_stub(file, files))
    # grpcio-tools always writes the _grpc module (empty without services).
    written = [
        directory / f"{stem}{suffix}"
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
    ]
    enums = error_enums(file)
    if enums:
        errors_file = directory / f"{stem}_errors.py"
        errors_file.write_text(render_errors_module(name, enums))
        written.append(errors_file)
    written += ensure_packages(directory, root)
    return written
