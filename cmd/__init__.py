"""Entry points of the service (``python -m cmd.server -conf configs/``).

This package is named ``cmd`` like go-kratos' layout, which shadows the standard library's
``cmd`` module whenever the project root is on ``sys.path`` (``python -m pytest``, ``pdb``,
``breakpoint()``). To keep those working, the standard module is loaded from the stdlib
directory and its public names are re-exported here, so ``import cmd; cmd.Cmd`` still works.
"""

from __future__ import annotations

import importlib.util
import sysconfig
from pathlib import Path

_stdlib_cmd = Path(sysconfig.get_paths()["stdlib"]) / "cmd.py"
_spec = importlib.util.spec_from_file_location("cmd", _stdlib_cmd)
if _spec is not None and _spec.loader is not None:
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    Cmd = _module.Cmd
    IDENTCHARS = _module.IDENTCHARS
    PROMPT = _module.PROMPT
    __all__ = ["IDENTCHARS", "PROMPT", "Cmd"]
