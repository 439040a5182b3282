"""Find the project template: inside the installed package, or at the repository root."""

from __future__ import annotations

from pathlib import Path

from framework.cli.exceptions import CliError
from framework.cli.manifest import PACKAGED_TEMPLATE_DIR, TEMPLATE_PACKAGE

__all__ = ["template_root"]

_HERE = Path(__file__).resolve().parent


def _is_template(root: Path) -> bool:
    server_main = root / "cmd" / "server" / "__main__.py"
    return (root / TEMPLATE_PACKAGE).is_dir() and server_main.is_file()


def template_root() -> Path:
    """The directory holding the template parts (``app_template/``, ``cmd/``, ...).

    A source checkout (editable install: ``framework/`` sits in the repository) uses the
    repository root, so edits to the reference service show up at once; a wheel install
    uses the copy its build packaged into ``framework/cli/_template/``.
    """
    repository = _HERE.parent.parent
    if (repository / "pyproject.toml").is_file() and _is_template(repository):
        return repository
    packaged = _HERE / PACKAGED_TEMPLATE_DIR
    if _is_template(packaged):
        return packaged
    raise CliError(
        f"the project template is missing: neither {packaged} nor {repository} holds "
        f"{TEMPLATE_PACKAGE}/ and cmd/server/; reinstall pykratos from its source"
    )
