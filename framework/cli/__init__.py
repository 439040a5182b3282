"""The ``pykratos`` command line: ``new``, ``run`` and ``proto add|client|server``.

Entry point: :func:`framework.cli.main.main` (console script ``pykratos``). Each subcommand lives
in its own module and is usable as a function too (:func:`framework.cli.scaffold.new_project`,
:func:`framework.cli.run.run_service`, :mod:`framework.cli.proto`).
"""

from framework.cli.exceptions import CliError

__all__ = ["CliError"]
