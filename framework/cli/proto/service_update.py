"""Add the methods of new RPCs to a service module ``pykratos proto server`` wrote earlier.

The module is the user's code by then: it is parsed (``ast``) only to find the servicer class,
the methods it has, and the names its imports bind. New methods are appended at the end of the
class body and any import they need goes after the last top-level import; no other line is
touched, so formatting, comments and implementations survive byte for byte.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from framework.cli.exceptions import CliError
from framework.cli.proto.service_code import class_name_for, render_method, service_full_name
from framework.cli.proto.type_refs import TypeRefs

__all__ = ["add_missing_methods"]


def _base_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _servicer_class(tree: ast.Module, service: Any) -> ast.ClassDef | None:
    """The top-level class deriving from ``<Service>Servicer`` (else named like ours)."""
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    servicer = f"{service.name}Servicer"
    for node in classes:
        if any(_base_name(base) == servicer for base in node.bases):
            return node
    return next((node for node in classes if node.name == class_name_for(service)), None)


def _defined(cls: ast.ClassDef) -> set[str]:
    """Names the class body defines (methods, and attributes such as ``X = other_method``)."""
    names: set[str] = set()
    for node in cls.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _bound_modules(tree: ast.Module) -> dict[str, str]:
    """Top-level ``import``/``from`` bindings: local name -> what it names (dotted)."""
    bound: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                bound[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def _import_line(module: str, alias: str) -> str:
    package, _, base = module.rpartition(".")
    return f"from {package} import {base}" + ("" if alias == base else f" as {alias}")


def add_missing_methods(
    path: Path, source: str, file: Any, service: Any, files: Sequence[Any]
) -> tuple[str, list[str]]:
    """Return ``source`` with a method for every RPC of ``service`` its class lacks.

    Returns ``(new source, names of the methods added)``; the source is unchanged when nothing
    is missing. ``path`` only names the module in errors. Raises :class:`CliError` when the
    source does not parse or has no class deriving from ``<Service>Servicer``.
    """
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as err:
        raise CliError(f"cannot add RPCs to {path}: it does not parse ({err})") from None
    cls = _servicer_class(tree, service)
    if cls is None:
        raise CliError(
            f"{path} exists but has no class deriving from {service.name}Servicer: add the new "
            "RPCs by hand, or regenerate the module with --force (which replaces it)"
        )
    defined = _defined(cls)
    missing = [method for method in service.method if method.name not in defined]
    if not missing:
        return source, []

    bound = _bound_modules(tree)
    refs = TypeRefs.build(files)
    # Existing imports of message modules are reused, under the names the user gave them.
    modules = {module for module, _ in refs.by_type.values()}
    refs.used.update({target: local for local, target in bound.items() if target in modules})
    known = set(refs.used)
    full = service_full_name(file, service)
    methods = "".join(render_method(method, full, refs) for method in missing)

    needed: list[str] = [_import_line(m, a) for m, a in refs.used.items() if m not in known]
    if "grpc" not in bound:
        needed.append("import grpc")
    if "errors" not in bound:
        needed.append("from framework import errors")
    streaming = any(m.client_streaming or m.server_streaming for m in missing)
    if streaming and "AsyncIterator" not in bound:
        needed.append("from collections.abc import AsyncIterator")

    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    assert cls.end_lineno is not None
    lines[cls.end_lineno : cls.end_lineno] = [methods]
    if needed:
        imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        after = max((n.end_lineno or n.lineno for n in imports if n.lineno < cls.lineno), default=0)
        lines[after:after] = [line + "\n" for line in needed]
    return "".join(lines), [method.name for method in missing]
