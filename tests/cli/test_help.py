"""``--help`` of ``pykratos`` and of every subcommand explains every option."""

from __future__ import annotations

import argparse
import subprocess

import pytest

from framework.cli.main import build_parser, main
from tests.cli.conftest import PYTHON


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
    return found


def _all_commands() -> list[tuple[list[str], argparse.ArgumentParser]]:
    out: list[tuple[list[str], argparse.ArgumentParser]] = []
    stack: list[tuple[list[str], argparse.ArgumentParser]] = [([], build_parser())]
    while stack:
        path, parser = stack.pop()
        out.append((path, parser))
        stack += [([*path, name], sub) for name, sub in _subparsers(parser).items()]
    return out


COMMANDS = _all_commands()


def test_every_command_is_covered() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert names == {
        "", "new", "run", "proto", "proto add", "proto client", "proto server", "docs"
    }


@pytest.mark.parametrize(
    ("path", "parser"), COMMANDS, ids=[" ".join(path) or "pykratos" for path, _ in COMMANDS]
)
def test_help_mentions_every_option_with_an_explanation(
    path: list[str], parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name in action.choices:
                assert name in text
            continue
        for option in action.option_strings:
            assert option in text, f"{option} missing from 'pykratos {' '.join(path)} --help'"
        if not action.option_strings:
            assert (action.metavar or action.dest) in text
        assert action.help and action.help != argparse.SUPPRESS, f"{action.dest} has no help"


def test_console_script_entry_point_runs() -> None:
    done = subprocess.run(
        [PYTHON, "-m", "framework.cli.main", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pykratos ")


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err
