"""Every logger the framework creates lives under ``pykratos.*``.

Users configure one logger tree (``logging.getLogger("pykratos").setLevel(...)``); a module
that logs under another name (``framework.transport...``, ``__name__``) escapes it silently.
"""

from __future__ import annotations

import ast
from pathlib import Path

import framework

ROOT = Path(framework.__file__).parent


def _logger_names() -> list[tuple[str, int, str]]:
    found: list[tuple[str, int, str]] = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "getLogger"
                and node.args
            ):
                arg = node.args[0]
                if isinstance(arg, ast.Constant):
                    name = str(arg.value)
                elif isinstance(arg, ast.Name) and arg.id == "__name__":
                    name = "__name__"  # the module path: framework.*, outside the tree
                else:
                    continue  # a computed name: code that configures other libraries' loggers
                found.append((str(path.relative_to(ROOT)), node.lineno, name))
    return found


# Third-party loggers the framework configures on purpose (not loggers it logs to).
_FOREIGN = ("uvicorn", "aiokafka", "aio_pika", "aiormq", "websockets", "grpc", "asyncio")


def test_framework_loggers_are_under_pykratos() -> None:
    names = _logger_names()
    assert names, "no getLogger call found: the scan is broken"
    wrong = [
        f"{path}:{line}: {name!r}"
        for path, line, name in names
        if not (name == "pykratos" or name.startswith("pykratos.") or name.startswith(_FOREIGN))
    ]
    assert not wrong, "loggers outside the pykratos.* tree:\n" + "\n".join(wrong)
