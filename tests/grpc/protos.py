"""Compile the test protos with grpc_tools.protoc once per test session and import them.

The generated modules are not committed: compiling at session start keeps them in step with
whatever grpcio-tools/protobuf versions are installed. They land in a temporary directory that
is put on ``sys.path``, so the generated ``import echo.v1.echo_pb2`` lines work unedited.
"""

from __future__ import annotations

import atexit
import importlib
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from grpc_tools import protoc

__all__ = ["PROTO_ROOT", "compile_protos", "echo_pb2", "echo_pb2_grpc"]

PROTO_ROOT = Path(__file__).parent / "proto"


def compile_protos(proto_root: Path, out_dir: Path) -> None:
    """Generate ``*_pb2.py`` and ``*_pb2_grpc.py`` for every proto under ``proto_root``."""
    protos = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *protos,
        ]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed ({status}) compiling {protos} from {proto_root}")


def _load() -> tuple[ModuleType, ModuleType]:
    out_dir = Path(tempfile.mkdtemp(prefix="pykratos-test-protos-"))
    atexit.register(shutil.rmtree, out_dir, True)
    compile_protos(PROTO_ROOT, out_dir)
    sys.path.insert(0, str(out_dir))
    return importlib.import_module("echo.v1.echo_pb2"), importlib.import_module(
        "echo.v1.echo_pb2_grpc"
    )


echo_pb2, echo_pb2_grpc = _load()
