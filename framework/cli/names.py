"""Project names: validate what the user typed and derive every spelling the template needs.

``pykratos new order-svc`` gives the distribution ``order-svc``, the Python package
``order_svc``, the DNS-1123 name ``order-svc`` (Kubernetes objects, compose services) and the
environment-variable prefix ``ORDER_SVC``.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
from dataclasses import dataclass

from framework.cli.exceptions import CliError

__all__ = ["RESERVED_NAMES", "ProjectNames", "project_names"]

#: Names a generated package may not take: the framework's own packages, the template's
#: top-level directories and packages every service imports.
RESERVED_NAMES = frozenset(
    {
        "api",
        "app_template",
        "cmd",
        "configs",
        "deploy",
        "framework",
        "pykratos",
        "test",
        "tests",
    }
)

_PACKAGE_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class ProjectNames:
    """Every spelling of one project name."""

    raw: str
    """As typed: ``order-svc``; the distribution name in ``pyproject.toml``."""
    package: str
    """Python package: ``order_svc``."""
    dns: str
    """Kubernetes/compose name: ``order-svc``."""
    env: str
    """Environment-variable prefix: ``ORDER_SVC``."""
    title: str
    """Human title for docs: ``Order Svc``."""


def project_names(raw: str, *, check_installed: bool = True) -> ProjectNames:
    """Validate ``raw`` and return its spellings, or raise :class:`CliError` saying why not.

    Rules: after ``-`` becomes ``_`` the name must be a lowercase ASCII identifier
    (``[a-z][a-z0-9_]*``), not a Python keyword, not a standard-library module, not one of
    :data:`RESERVED_NAMES` and (with ``check_installed``) not an importable top-level module of
    this environment, because the new package would shadow it or be shadowed by it.
    """
    package = raw.replace("-", "_")
    hint = f"project name {raw!r}"
    if not raw:
        raise CliError("the project name must not be empty", exit_code=2)
    if not _PACKAGE_RE.match(package) or package.endswith("_") or "__" in package:
        raise CliError(
            f"{hint} is not valid: after '-' becomes '_', it must be a lowercase Python "
            "identifier: a letter, then letters, digits or single '_' (e.g. 'order-svc' or "
            "'billing')",
            exit_code=2,
        )
    if keyword.iskeyword(package) or keyword.issoftkeyword(package):
        raise CliError(f"{hint} is a Python keyword; pick another name", exit_code=2)
    if package in sys.stdlib_module_names:
        raise CliError(
            f"{hint} would become the package {package!r}, which shadows the standard library "
            f"module {package!r}; pick another name",
            exit_code=2,
        )
    if package in RESERVED_NAMES:
        raise CliError(
            f"{hint} is reserved (it names a framework or template package/directory: "
            f"{', '.join(sorted(RESERVED_NAMES))}); pick another name",
            exit_code=2,
        )
    if check_installed and importlib.util.find_spec(package) is not None:
        raise CliError(
            f"{hint} would become the package {package!r}, but a module of that name is already "
            "importable in this environment (one would shadow the other); pick another name",
            exit_code=2,
        )
    dns = package.replace("_", "-")
    return ProjectNames(
        raw=raw,
        package=package,
        dns=dns,
        env=package.upper(),
        title=" ".join(part.capitalize() for part in package.split("_")),
    )
