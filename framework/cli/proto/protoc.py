"""Run grpcio-tools' protoc, and read a proto back as descriptors (with its comments)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from framework.cli.exceptions import CliError

__all__ = ["load_descriptors", "run_protoc"]


def _well_known_include() -> Path:
    spec = importlib.util.find_spec("grpc_tools")
    if spec is None or spec.origin is None:
        raise CliError(
            "pykratos proto needs grpcio-tools (and protobuf): pip install 'pykratos[grpc]'"
        )
    # grpcio-tools ships google/protobuf/*.proto (the well-known types) in grpc_tools/_proto.
    return Path(spec.origin).parent / "_proto"


def run_protoc(
    root: Path, proto_name: str, outputs: Sequence[str], includes: Sequence[Path] = ()
) -> None:
    """Run ``protoc -I root -I <includes> -I <well-known> <outputs> proto_name`` in ``root``.

    ``outputs`` are protoc flags such as ``--python_out=.``. A protoc error becomes a
    :class:`CliError` carrying protoc's own message.
    """
    args = [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}"]
    args += [f"-I{include}" for include in includes]
    args += [f"-I{_well_known_include()}", *outputs, str(root / proto_name)]
    done = subprocess.run(args, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise CliError(f"protoc failed on {proto_name}:\n{detail}")


def load_descriptors(
    root: Path, proto_name: str, includes: Sequence[Path] = (), outputs: Sequence[str] = ()
) -> tuple[Any, list[Any]]:
    """Compile ``proto_name`` to descriptors: ``(its FileDescriptorProto, every file's)``.

    Source info is included, so leading/trailing comments are available (they carry the
    ``@code=`` tags of error reasons). ``outputs`` are more protoc flags for the same run
    (e.g. ``--python_out=.``): protoc writes nothing unless the whole file compiles.
    """
    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory(prefix="pykratos-proto-") as tmp:
        out = Path(tmp) / "set.pb"
        flags = [f"--descriptor_set_out={out}", "--include_source_info", "--include_imports"]
        run_protoc(root, proto_name, [*flags, *outputs], includes)
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    files = list(fds.file)
    for file in files:
        if file.name == proto_name:
            return file, files
    raise CliError(f"protoc did not describe {proto_name}")  # pragma: no cover - protoc bug
