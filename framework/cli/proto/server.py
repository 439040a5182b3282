"""``pykratos proto server``: a service-layer class per proto service, every RPC unimplemented.

Each generated method raises ``framework.errors.NotImplemented_`` (HTTP 501, gRPC
UNIMPLEMENTED) until it is filled in, like ``kratos proto server``. Unary, server-streaming,
client-streaming and bidirectional RPCs get the matching ``grpc.aio`` signature.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.cli.exceptions import CliError
from framework.cli.proto.paths import ensure_packages, find_project_root, module_of, relative_proto
from framework.cli.proto.protoc import load_descriptors

__all__ = ["generate_server", "render_service", "snake_case"]


def snake_case(name: str) -> str:
    """``OrderItemService`` -> ``order_item_service``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])|(?<=[A-Z])([A-Z][a-z])", r"_\1\2", name).lower()


@dataclass(frozen=True, slots=True)
class _Imports:
    """Maps fully qualified message names to ``alias.Name`` and collects the imports needed."""

    by_type: dict[str, tuple[str, str]]  # ".pkg.Msg" -> (module, "Msg" / "Outer.Inner")
    used: dict[str, str]  # module -> alias

    @classmethod
    def build(cls, files: Sequence[Any]) -> _Imports:
        by_type: dict[str, tuple[str, str]] = {}
        for file in files:
            module = module_of(file.name, "_pb2")
            prefix = f".{file.package}" if file.package else ""
            stack = [(f"{prefix}.{m.name}", m.name, m) for m in file.message_type]
            while stack:
                full, attr, message = stack.pop()
                by_type[full] = (module, attr)
                stack += [(f"{full}.{n.name}", f"{attr}.{n.name}", n) for n in message.nested_type]
        return cls(by_type, {})

    def ref(self, full_name: str) -> str:
        module, attr = self.by_type[full_name]
        alias = self.used.get(module)
        if alias is None:
            base = module.rsplit(".", 1)[-1]
            alias = base if base not in self.used.values() else module.replace(".", "_")
            self.used[module] = alias
        return f"{alias}.{attr}"

    def import_sections(self, extra: tuple[str, str]) -> tuple[list[str], list[str]]:
        """``(third-party lines, project lines)``, isort-style: one ``from`` per package."""
        by_package: dict[str, list[str]] = {}
        for module, alias in [*self.used.items(), extra]:
            package, _, base = module.rpartition(".")
            suffix = "" if alias == base else f" as {alias}"
            by_package.setdefault(package, []).append(f"{base}{suffix}")
        third: list[str] = []
        project: list[str] = []
        for package, names in sorted(by_package.items()):
            line = f"from {package} import {', '.join(sorted(names))}"
            (third if package.split(".")[0] == "google" else project).append(line)
        return third, project


_UNARY_REPLY = string.Template('''
    async def $name(
        self, $params, context: grpc.aio.ServicerContext
    ) -> $reply:
        """$rpc ($kind)."""
        raise errors.NotImplemented_(
            "NOT_IMPLEMENTED", "$rpc is not implemented"
        )
''')

_STREAM_REPLY = string.Template('''
    async def $name(
        self, $params, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[$reply]:
        """$rpc ($kind): yield the replies."""
        raise errors.NotImplemented_(
            "NOT_IMPLEMENTED", "$rpc is not implemented"
        )
        yield  # unreachable: makes this method an async generator
''')


def _method(method: Any, service_full: str, imports: _Imports) -> str:
    request = imports.ref(method.input_type)
    if method.client_streaming:
        params = f"request_iterator: AsyncIterator[{request}]"
    else:
        params = f"request: {request}"
    if method.server_streaming:
        template = _STREAM_REPLY
        kind = "bidirectional-streaming" if method.client_streaming else "server-streaming"
    else:
        template = _UNARY_REPLY
        kind = "client-streaming" if method.client_streaming else "unary"
    return template.substitute(
        name=method.name,
        params=params,
        reply=imports.ref(method.output_type),
        rpc=f"{service_full}/{method.name}",
        kind=kind,
    )


def render_service(file: Any, service: Any, files: Sequence[Any]) -> str:
    """Python source of the service-layer class for ``service`` of ``file``."""
    imports = _Imports.build(files)
    full = f"{file.package}.{service.name}" if file.package else service.name
    methods = [_method(method, full, imports) for method in service.method]
    grpc_module = module_of(file.name, "_pb2_grpc")
    grpc_base = grpc_module.rpartition(".")[2]
    third, project = imports.import_sections((grpc_module, grpc_base))
    class_name = service.name if service.name.endswith("Service") else f"{service.name}Service"
    streaming = any(m.client_streaming or m.server_streaming for m in service.method)
    header = f'''"""Service layer of {full}; generated by `pykratos proto server`, yours to edit.

Every RPC raises ``framework.errors.NotImplemented_`` (gRPC UNIMPLEMENTED) until filled in.
Register it with the gRPC server:

    server.register({grpc_base}.add_{service.name}Servicer_to_server, {class_name}(...))
"""

from __future__ import annotations

'''
    stdlib = "from collections.abc import AsyncIterator\n\n" if streaming else ""
    third_party = "\n".join(["import grpc", *sorted([*third, "from framework import errors"])])
    body = third_party + "\n\n" + "\n".join(project)
    doc = f'    """Implements ``{full}``."""\n'
    return (
        header
        + stdlib
        + body
        + f'\n\n__all__ = ["{class_name}"]\n\n\n'
        + f"class {class_name}({grpc_base}.{service.name}Servicer):\n"
        + doc
        + "".join(methods)
    )


def generate_server(
    proto: Path,
    target: Path,
    *,
    root: Path | None = None,
    includes: Sequence[Path] = (),
    force: bool = False,
) -> list[Path]:
    """Write ``target/<service_snake>.py`` for every service in ``proto``; returns the files.

    Refuses to overwrite an existing file (your implementation) unless ``force``.
    """
    if not proto.is_file():
        raise CliError(f"{proto} does not exist (create one with: pykratos proto add {proto})")
    root = (root or find_project_root(proto.parent)).resolve()
    name = relative_proto(proto, root).as_posix()
    file, files = load_descriptors(root, name, includes)
    if not file.service:
        raise CliError(f"{proto} declares no service")
    outputs = {}
    for service in file.service:
        outputs[target / f"{snake_case(service.name)}.py"] = render_service(file, service, files)
    existing = [str(path) for path in outputs if path.exists()]
    if existing and not force:
        raise CliError(f"refusing to overwrite {', '.join(existing)} (use --force)")
    target.mkdir(parents=True, exist_ok=True)
    for path, text in outputs.items():
        path.write_text(text)
    return [*outputs, *ensure_packages(target, root)]
