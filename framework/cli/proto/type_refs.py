"""Python names of proto message types, and the imports that bring them in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from framework.cli.proto.paths import module_of

__all__ = ["TypeRefs"]


@dataclass(slots=True)
class TypeRefs:
    """Maps fully qualified message names to ``alias.Name`` and collects the imports needed.

    Build it from every file protoc described (the proto and its imports), call :meth:`ref`
    for each type the generated code mentions, then :meth:`import_lines` for the imports.
    """

    by_type: dict[str, tuple[str, str]]  # ".pkg.Msg" -> (module, "Msg" / "Outer.Inner")
    used: dict[str, str] = field(default_factory=dict)  # module -> alias

    @classmethod
    def build(cls, files: Sequence[Any]) -> TypeRefs:
        """Index the messages (nested ones too) of ``files`` (``FileDescriptorProto``s)."""
        by_type: dict[str, tuple[str, str]] = {}
        for file in files:
            module = module_of(file.name, "_pb2")
            prefix = f".{file.package}" if file.package else ""
            stack = [(f"{prefix}.{m.name}", m.name, m) for m in file.message_type]
            while stack:
                full, attr, message = stack.pop()
                by_type[full] = (module, attr)
                stack += [(f"{full}.{n.name}", f"{attr}.{n.name}", n) for n in message.nested_type]
        return cls(by_type)

    def ref(self, full_name: str) -> str:
        """``alias.Name`` for the message ``full_name`` (``.pkg.Msg``); records its import."""
        module, attr = self.by_type[full_name]
        alias = self.used.get(module)
        if alias is None:
            base = module.rsplit(".", 1)[-1]
            alias = base if base not in self.used.values() else module.replace(".", "_")
            self.used[module] = alias
        return f"{alias}.{attr}"

    def import_lines(self, extra: Sequence[tuple[str, str]] = ()) -> tuple[list[str], list[str]]:
        """``(well-known type lines, project lines)``, isort-style: one ``from`` per package.

        ``extra`` adds ``(module, alias)`` pairs. ``google.*`` modules (the well-known types)
        are third-party; every other module is the project's.
        """
        by_package: dict[str, list[str]] = {}
        for module, alias in [*self.used.items(), *extra]:
            package, _, base = module.rpartition(".")
            suffix = "" if alias == base else f" as {alias}"
            by_package.setdefault(package, []).append(f"{base}{suffix}")
        third: list[str] = []
        project: list[str] = []
        for package, names in sorted(by_package.items()):
            line = f"from {package} import {', '.join(sorted(names))}"
            (third if package.split(".")[0] == "google" else project).append(line)
        return third, project
