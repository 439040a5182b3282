"""The one exception the CLI turns into a clear message and a non-zero exit status."""

from __future__ import annotations

__all__ = ["CliError"]


class CliError(Exception):
    """A user-facing failure: ``str(err)`` is printed as ``pykratos: error: ...``.

    ``exit_code`` is the process exit status (2 for usage errors, like argparse, else 1).
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
