"""``pykratos proto add | client | server``: skeleton -> stubs -> UNIMPLEMENTED -> answers."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest

from framework import errors
from framework.cli.exceptions import CliError
from framework.cli.main import main
from framework.cli.names import project_names
from framework.cli.project_files import pyproject
from framework.cli.proto.skeleton import proto_package_for, render_skeleton
from framework.transport.grpc import GrpcServer
from tests.cli.conftest import check_lint_and_types

STREAMING_PROTO = """\
syntax = "proto3";
package chat.v1;
import "google/protobuf/empty.proto";

service Chat {
  rpc Send (Note) returns (google.protobuf.Empty);
  rpc Watch (google.protobuf.Empty) returns (stream Note);
  rpc Upload (stream Note) returns (Summary);
  rpc Talk (stream Note) returns (stream Note);
  rpc Nested (Summary.Part) returns (Summary.Part);
}

// Errors of the chat API.
// @default_code=503
enum ChatErrorReason {
  CHAT_UNSPECIFIED = 0;
  // The room does not exist. @code=404
  ROOM_MISSING = 1;
  ROOM_FULL = 2; // @code=429 too many members
  BACKEND_DOWN = 3;
}

message Note { string text = 1; }
message Summary {
  message Part { int32 n = 1; }
  int32 count = 1;
}
"""

CALLER = """\
\"\"\"Typed user code calling the generated stubs.\"\"\"

from __future__ import annotations

import grpc

from {package}.api.chat.v1 import chat_pb2, chat_pb2_grpc
from {package}.service.chat import ChatService


async def send(channel: grpc.aio.Channel) -> None:
    await chat_pb2_grpc.ChatStub(channel).Send(chat_pb2.Note(text="hi"))


def register(server: grpc.aio.Server) -> None:
    chat_pb2_grpc.add_ChatServicer_to_server(ChatService(), server)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """An empty project (pyproject.toml only) with a unique package name, importable."""
    package = f"pk_{uuid.uuid4().hex[:10]}"
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path, package
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


def _import(name: str) -> ModuleType:
    importlib.invalidate_caches()
    return importlib.import_module(name)


async def _serve(add: object, servicer: object) -> tuple[GrpcServer, grpc.aio.Channel]:
    server = GrpcServer("127.0.0.1", 0, middlewares=[])
    server.register(add, servicer)  # type: ignore[arg-type]
    await server.start()
    return server, grpc.aio.insecure_channel(server.endpoint.removeprefix("grpc://"))


def test_proto_package_from_path() -> None:
    assert proto_package_for(Path("api/billing/v1/billing.proto")) == "billing.v1"
    assert proto_package_for(Path("svc/api/billing/v1/b.proto")) == "billing.v1"
    assert proto_package_for(Path("billing/v2/b.proto")) == "billing.v2"
    with pytest.raises(CliError, match="not a valid"):
        proto_package_for(Path("api/bad-name/v1/x.proto"))


#: Proto paths (below the package) whose generated modules could not be imported.
BAD_PROTO_PATHS = [
    "api/billing/v1/bad-name.proto",  # '-' in the file name
    "api/class/v1/class.proto",  # keyword directory and file name
    "api/billing/v1/def.proto",  # keyword file name
    "api/bad-dir/v1/x.proto",  # '-' in a directory
    "api/billing/V1/x.proto",  # not lowercase
    "api/billing/v1/Billing.proto",
    "api/billing/v1/2fa.proto",  # starts with a digit
    "api/billing/v1/order__item.proto",  # '__'
    "api/billing/v1/match.proto",  # soft keyword, refused as 'pykratos new' does
]


def _one_line_usage_error(capsys: pytest.CaptureFixture[str], *parts: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("pykratos: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for part in parts:
        assert part in err, (part, err)


@pytest.mark.parametrize("relative", BAD_PROTO_PATHS)
def test_add_refuses_a_path_that_is_not_importable(
    project: tuple[Path, str], relative: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root, package = project
    assert main(["proto", "add", f"{package}/{relative}"]) == 2
    _one_line_usage_error(capsys, relative)
    if relative.startswith("api/class/"):  # the first offending part is named, as what it is
        main(["proto", "add", f"{package}/{relative}"])
        _one_line_usage_error(capsys, "directory 'class' of ", "is a Python keyword")
    assert not (root / package).exists()  # nothing written, not even a directory


def test_add_refuses_a_path_outside_the_project(
    project: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, _ = project
    outside = tmp_path_factory.mktemp("elsewhere") / "nu" / "x.proto"
    assert main(["proto", "add", str(outside)]) == 2
    _one_line_usage_error(capsys, f"is not inside the project root {root}")
    assert not outside.parent.exists()


@pytest.mark.parametrize("relative", BAD_PROTO_PATHS)
def test_client_and_server_refuse_an_existing_file_that_is_not_importable(
    project: tuple[Path, str], relative: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root, package = project
    proto = root / package / relative
    proto.parent.mkdir(parents=True)
    proto.write_text(render_skeleton(Path(f"{package}/api/billing/v1/billing.proto")))
    assert main(["proto", "client", str(proto)]) == 2
    _one_line_usage_error(capsys, relative)
    target = root / package / "service"
    assert main(["proto", "server", str(proto), "-t", str(target)]) == 2
    _one_line_usage_error(capsys, relative)
    assert [p.name for p in proto.parent.iterdir()] == [proto.name]  # nothing generated
    assert not target.exists()


async def test_add_client_server_round_trip(project: tuple[Path, str]) -> None:
    root, package = project
    proto = f"{package}/api/billing/v1/billing.proto"
    assert main(["proto", "add", proto]) == 0
    text = (root / proto).read_text()
    assert "package billing.v1;" in text and "service Billing {" in text
    assert main(["proto", "add", proto]) == 1  # never overwrites silently

    assert main(["proto", "client", proto]) == 0
    v1 = root / package / "api" / "billing" / "v1"
    for name in ("billing_pb2.py", "billing_pb2.pyi", "billing_pb2_grpc.py", "billing_errors.py"):
        assert (v1 / name).is_file(), name
    for directory in (root / package, root / package / "api", v1.parent, v1):
        assert (directory / "__init__.py").is_file()
    grpc_source = (v1 / "billing_pb2_grpc.py").read_text()
    assert f"from {package}.api.billing.v1 import billing_pb2" in grpc_source

    assert main(["proto", "server", proto, "-t", f"{package}/service"]) == 0
    service_file = root / package / "service" / "billing.py"
    assert service_file.is_file()
    generated_text = service_file.read_text()
    assert main(["proto", "server", proto, "-t", f"{package}/service"]) == 0  # nothing to add
    assert service_file.read_text() == generated_text

    pb2 = _import(f"{package}.api.billing.v1.billing_pb2")
    pb2_grpc = _import(f"{package}.api.billing.v1.billing_pb2_grpc")
    generated = _import(f"{package}.service.billing")
    server, channel = await _serve(
        pb2_grpc.add_BillingServicer_to_server, generated.BillingService()
    )
    try:
        stub = pb2_grpc.BillingStub(channel)
        for method, request in [
            ("CreateBilling", pb2.CreateBillingRequest(name="a")),
            ("UpdateBilling", pb2.UpdateBillingRequest(id="1")),
            ("DeleteBilling", pb2.DeleteBillingRequest(id="1")),
            ("GetBilling", pb2.GetBillingRequest(id="1")),
            ("ListBilling", pb2.ListBillingRequest()),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await getattr(stub, method)(request, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
            assert errors.from_exception(info.value).reason == "NOT_IMPLEMENTED"
    finally:
        await channel.close()
        await server.stop(1.0)

    # Fill in one method the way a user would: edit the generated file.
    source = service_file.read_text()
    marker = '"billing.v1.Billing/GetBilling is not implemented"\n        )\n'
    assert marker in source
    head, _, tail = source.partition(marker)
    head = head[: head.rindex("        raise errors.NotImplemented_(")]
    source = head + "        return billing_pb2.GetBillingReply(id=request.id, name='n')\n" + tail
    service_file.write_text(source)
    del sys.modules[f"{package}.service.billing"]
    filled = _import(f"{package}.service.billing")
    server, channel = await _serve(pb2_grpc.add_BillingServicer_to_server, filled.BillingService())
    try:
        stub = pb2_grpc.BillingStub(channel)
        reply = await stub.GetBilling(pb2.GetBillingRequest(id="42"), timeout=10)
        assert (reply.id, reply.name) == ("42", "n")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListBilling(pb2.ListBillingRequest(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await channel.close()
        await server.stop(1.0)


async def test_streaming_rpcs_and_error_helpers(project: tuple[Path, str]) -> None:
    root, package = project
    proto = root / package / "api" / "chat" / "v1" / "chat.proto"
    proto.parent.mkdir(parents=True)
    proto.write_text(STREAMING_PROTO)
    assert main(["proto", "client", str(proto)]) == 0
    assert main(["proto", "server", str(proto), "--target", str(root / package / "service")]) == 0

    errs = _import(f"{package}.api.chat.v1.chat_errors")
    assert sorted(errs.__all__) == [
        "error_backend_down", "error_room_full", "error_room_missing",
        "is_backend_down", "is_room_full", "is_room_missing",
    ]  # fmt: skip
    assert errs.error_room_missing("no room", room="r1").code == 404
    assert errs.error_room_full().code == 429
    assert errs.error_backend_down().code == 503  # the enum's @default_code
    assert "The room does not exist." in (errs.error_room_missing.__doc__ or "")
    assert errs.is_room_missing(errs.error_room_missing())
    assert not errs.is_room_missing(errs.error_room_full())
    assert not errs.is_room_missing(None)

    pb2 = _import(f"{package}.api.chat.v1.chat_pb2")
    pb2_grpc = _import(f"{package}.api.chat.v1.chat_pb2_grpc")
    generated = _import(f"{package}.service.chat")
    service = generated.ChatService()
    server, channel = await _serve(pb2_grpc.add_ChatServicer_to_server, service)

    async def notes() -> AsyncIterator[object]:
        yield pb2.Note(text="x")

    from google.protobuf import empty_pb2

    try:
        stub = pb2_grpc.ChatStub(channel)
        calls = {
            "Send": lambda: stub.Send(pb2.Note(), timeout=10),
            "Watch": lambda: _drain(stub.Watch(empty_pb2.Empty(), timeout=10)),
            "Upload": lambda: stub.Upload(notes(), timeout=10),
            "Talk": lambda: _drain(stub.Talk(notes(), timeout=10)),
            "Nested": lambda: stub.Nested(pb2.Summary.Part(n=1), timeout=10),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call()
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, name

    finally:
        await channel.close()
        await server.stop(1.0)

    # An error helper raised by a handler reaches a gRPC client with its code and reason.
    class Filled(generated.ChatService):  # type: ignore[misc,name-defined]
        async def Send(self, request: object, context: object) -> object:
            raise errs.error_room_missing("no such room")

    server, channel = await _serve(pb2_grpc.add_ChatServicer_to_server, Filled())
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb2_grpc.ChatStub(channel).Send(pb2.Note(), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert errs.is_room_missing(info.value)
    finally:
        await channel.close()
        await server.stop(1.0)


def test_generated_code_is_ruff_and_mypy_strict_clean(project: tuple[Path, str]) -> None:
    """With a scaffolded project's settings: every RPC kind, a well-known type, nesting."""
    root, package = project
    (root / "pyproject.toml").write_text(pyproject(project_names(package)))
    proto = root / package / "api" / "chat" / "v1" / "chat.proto"
    proto.parent.mkdir(parents=True)
    proto.write_text(STREAMING_PROTO)
    assert main(["proto", "client", str(proto)]) == 0
    assert (proto.parent / "chat_pb2_grpc.pyi").is_file()
    assert main(["proto", "server", str(proto), "-t", str(root / package / "service")]) == 0
    # A caller of the stubs and of add_..._to_server, type-checked like user code.
    (root / package / "client.py").write_text(CALLER.format(package=package))
    check_lint_and_types(root, package)


async def _drain(call: AsyncIterator[object]) -> list[object]:
    return [item async for item in call]


def test_protoc_errors_are_reported(
    project: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, package = project
    proto = root / package / "api" / "bad" / "v1" / "bad.proto"
    proto.parent.mkdir(parents=True)
    proto.write_text('syntax = "proto3";\npackage bad.v1;\nmessage M { strin x = 1; }\n')
    assert main(["proto", "client", str(proto)]) == 1
    err = capsys.readouterr().err
    assert "protoc failed" in err and "strin" in err
    assert not (proto.parent / "bad_pb2.py").exists()


def test_missing_proto_is_reported(
    project: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["proto", "client", "api/none/v1/none.proto"]) == 1
    assert "does not exist" in capsys.readouterr().err


# Its own proto package: the default descriptor pool is process-wide and already holds chat.v1.
FIRST_PROTO = STREAMING_PROTO.replace("package chat.v1;", "package growing.v1;")
GROWN_PROTO = FIRST_PROTO.replace(
    "  rpc Nested (Summary.Part) returns (Summary.Part);\n",
    "  rpc Nested (Summary.Part) returns (Summary.Part);\n"
    "  rpc Ping (google.protobuf.Empty) returns (google.protobuf.Empty);\n"
    "  rpc Follow (stream Summary) returns (stream google.protobuf.Empty);\n",
)


async def test_proto_server_adds_new_rpcs_to_the_existing_class(
    project: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 23: RPCs added to the proto become methods of the user's class, no second class."""
    root, package = project
    proto = root / package / "api" / "chat" / "v1" / "chat.proto"
    proto.parent.mkdir(parents=True)
    proto.write_text(FIRST_PROTO)
    target = root / package / "service"
    assert main(["proto", "client", str(proto)]) == 0
    assert main(["proto", "server", str(proto), "-t", str(target)]) == 0
    module = target / "chat.py"
    # The user implements Send and adds code of their own, then the API grows by two RPCs
    # (one streaming both ways, both on a well-known type the module does not import yet).
    mine = module.read_text().replace(
        '        raise errors.NotImplemented_(\n            "NOT_IMPLEMENTED", '
        '"growing.v1.Chat/Send is not implemented"\n        )\n',
        "        return empty_pb2.Empty()  # implemented by the user\n",
    ).replace("import grpc\n", "import grpc\nfrom google.protobuf import empty_pb2\n", 1)
    mine += "\n\nHELPER = 'user code after the class'\n"
    module.write_text(mine)
    proto.write_text(GROWN_PROTO)
    assert main(["proto", "client", str(proto)]) == 0
    capsys.readouterr()

    assert main(["proto", "server", str(proto), "-t", str(target)]) == 0
    assert f"added Ping, Follow to {module}" in capsys.readouterr().out
    grown = module.read_text()
    assert grown.count("class ") == 1 and grown.count("async def Send(") == 1
    # Every line the user had is still there, in order; only new lines were inserted.
    old_lines = iter(mine.splitlines())
    pending = next(old_lines)
    for line in grown.splitlines():
        if line == pending:
            pending = next(old_lines, None)  # type: ignore[arg-type]
    assert pending is None, f"user line lost or moved: {pending!r}"
    assert "from collections.abc import AsyncIterator" in grown

    assert main(["proto", "server", str(proto), "-t", str(target)]) == 0  # idempotent
    assert module.read_text() == grown
    assert "left as it is" in capsys.readouterr().out

    pb2_grpc = _import(f"{package}.api.chat.v1.chat_pb2_grpc")
    service = _import(f"{package}.service.chat").ChatService()
    server, channel = await _serve(pb2_grpc.add_ChatServicer_to_server, service)
    from google.protobuf import empty_pb2

    pb2 = _import(f"{package}.api.chat.v1.chat_pb2")
    try:
        stub = pb2_grpc.ChatStub(channel)
        assert await stub.Send(pb2.Note(), timeout=10) == empty_pb2.Empty()  # the user's code
        for call in (
            lambda: stub.Ping(empty_pb2.Empty(), timeout=10),
            lambda: _drain(stub.Follow(_one(pb2.Summary()), timeout=10)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call()
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await channel.close()
        await server.stop(1.0)


def test_proto_server_refuses_a_module_without_the_servicer_class(
    project: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, package = project
    proto = root / package / "api" / "chat" / "v1" / "chat.proto"
    proto.parent.mkdir(parents=True)
    proto.write_text(STREAMING_PROTO)
    target = root / package / "service"
    target.mkdir(parents=True)
    (target / "chat.py").write_text("class Unrelated:\n    pass\n")
    assert main(["proto", "server", str(proto), "-t", str(target)]) == 1
    assert "no class deriving from ChatServicer" in capsys.readouterr().err
    assert (target / "chat.py").read_text() == "class Unrelated:\n    pass\n"


async def _one(item: object) -> AsyncIterator[object]:
    yield item
