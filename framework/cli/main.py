"""``pykratos``: argument parsing and dispatch for every subcommand.

    pykratos new NAME [--dir PATH]
    pykratos run [-conf DIR] [--reload] [--grace SECONDS]
    pykratos proto add PATH [--force]
    pykratos proto client PATH [--root DIR] [-I DIR ...]
    pykratos proto server PATH -t DIR [--root DIR] [-I DIR ...] [--force]
    pykratos docs OUT_DIR [-conf DIR]

A :class:`~framework.cli.exceptions.CliError` becomes ``pykratos: error: ...`` on stderr and its
exit status; nothing else is caught, so a bug shows its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from framework import __version__
from framework.cli.exceptions import CliError

__all__ = ["EXIT_USAGE_TEXT", "build_parser", "main"]

#: What exit status 2 means, for ``--help``: a wrong invocation, found before any work.
EXIT_USAGE_TEXT = (
    "a usage error, with a one-line message (a bad argument, project name or proto path; a "
    "target that exists, is not empty, is too long or may not be written; run outside a "
    "project)"
)


def _add_new(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "new",
        help="create a service project from the reference template (offline)",
        description=(
            "Create a service project from the reference service shipped inside pykratos: "
            "its Python package (renamed after NAME), cmd/server, configs/, tests/ and deploy/ "
            "(Dockerfile, compose, Kubernetes), plus pyproject.toml, README.md and .gitignore. "
            "No network access is needed."
        ),
        epilog=(
            "NAME may contain '-' (the Python package uses '_'): 'order-svc' gives the package "
            "order_svc. Keywords, standard-library module names, names of importable modules "
            "and framework names (framework, cmd, tests, ...) are refused."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="project name, e.g. order-svc")
    parser.add_argument(
        "--dir",
        metavar="PATH",
        type=Path,
        help="directory to create the project in; must be missing or empty (default: ./NAME)",
    )
    parser.set_defaults(handler=_cmd_new)


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "run",
        help="run the current project's service (python -m cmd.server)",
        description=(
            "Run 'python -m cmd.server -conf DIR' from the project root (the nearest directory "
            "above the current one with cmd/server/__main__.py) with this Python. SIGINT, "
            "SIGTERM and SIGHUP are forwarded to the service; the exit status is the service's."
        ),
    )
    parser.add_argument(
        "-conf",
        "--conf",
        dest="conf",
        default="configs/",
        metavar="DIR",
        help="config file or directory, relative to the project root (default: configs/)",
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        help="restart the service whenever a .py/.yaml/.yml/.json/.toml/.proto file of the "
        "project changes (development only); if the service exits by itself (e.g. it failed to "
        "start), its exit status is printed and the next change starts it again",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="with --reload: how long the old process may take to stop after SIGTERM before "
        "it is killed (default: 15, above the template's app.stop_timeout of 10)",
    )
    parser.set_defaults(handler=_cmd_run)


def _add_proto_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="project root given to protoc as -I, so imports read 'from pkg.api.x.v1 import "
        "x_pb2' (default: nearest directory above the proto with a pyproject.toml)",
    )
    parser.add_argument(
        "-I",
        "--proto-path",
        dest="includes",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="extra directory to search for imported protos (repeatable); the well-known "
        "google/protobuf types are always available",
    )


def _add_proto(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    proto = commands.add_parser(
        "proto",
        help="write proto skeletons, generate Python code and service stubs",
        description="Work with protobuf APIs: add, client, server.",
    )
    verbs = proto.add_subparsers(dest="proto_command", metavar="COMMAND", required=True)

    add = verbs.add_parser(
        "add",
        help="write a proto skeleton",
        description=(
            "Write a proto skeleton at PATH: package from the directories after 'api' "
            "(api/billing/v1/billing.proto -> billing.v1), a service named after the file with "
            "Create/Update/Delete/Get/List unary RPCs, their messages, and an ErrorReason enum."
        ),
        epilog=(
            "PATH must lie inside the project (the nearest directory above it with a "
            "pyproject.toml, else the current one), and every directory below the project root "
            "and the file name must be lowercase Python names (letters, digits, single '_'; no "
            "'-', no keyword such as 'class'), since the generated code imports them; 'proto "
            "client' and 'proto server' refuse other files the same way (exit status 2)."
        ),
    )
    add.add_argument("path", type=Path, metavar="PATH", help="proto file to create")
    add.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    add.set_defaults(handler=_cmd_proto_add)

    client = verbs.add_parser(
        "client",
        help="generate Python messages, gRPC stubs, .pyi and error helpers",
        description=(
            "Generate x_pb2.py, x_pb2.pyi and x_pb2_grpc.py next to PATH with grpcio-tools, "
            "x_pb2_grpc.pyi (its types, for mypy --strict), "
            "create missing __init__.py files up to the project root, and, when the proto has "
            "an enum whose name ends in ErrorReason, write x_errors.py with is_<reason>(err) "
            "and error_<reason>(message, **metadata) helpers."
        ),
        epilog=(
            "Error codes: tag a value's comment with @code=NNN (its HTTP status, e.g. "
            "'NOT_FOUND = 1; // @code=404'); values without a tag use the enum's "
            "@default_code=NNN (comment above the enum), else 500. Values ending in "
            "UNSPECIFIED get no helpers."
        ),
    )
    client.add_argument("path", type=Path, metavar="PATH", help="proto file to compile")
    _add_proto_common(client)
    client.set_defaults(handler=_cmd_proto_client)

    server = verbs.add_parser(
        "server",
        help="write a service-layer class implementing every RPC",
        description=(
            "Write DIR/<service>.py (-t DIR) for every service in PATH: a class deriving from the "
            "generated Servicer with every RPC (unary and streaming) raising "
            "framework.errors.NotImplemented_ (gRPC UNIMPLEMENTED) until you fill it in. "
            "Run 'pykratos proto client PATH' first: the class imports the generated stubs. "
            "When DIR/<service>.py exists (your code), only the methods of RPCs added to the "
            "proto since are appended to its class; nothing else in it changes."
        ),
    )
    server.add_argument("path", type=Path, metavar="PATH", help="proto file to read")
    server.add_argument(
        "-t",
        "--target",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory for the generated service module(s), e.g. my_svc/service",
    )
    server.add_argument(
        "--force",
        action="store_true",
        help="replace existing service modules instead of adding the missing methods",
    )
    _add_proto_common(server)
    server.set_defaults(handler=_cmd_proto_server)


def _add_docs(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "docs",
        help="write the service's openapi.json and asyncapi.json to a folder",
        description=(
            "Build the current project's App from its config without starting it ('python -m "
            "cmd.server -conf DIR --write-docs OUT_DIR', from the project root) and write "
            "openapi.json, asyncapi.json (AsyncAPI 3.0.0) and asyncapi.html (offline view)."
        ),
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (created if needed)")
    parser.add_argument(
        "-conf",
        "--conf",
        dest="conf",
        default="configs/",
        metavar="DIR",
        help="config file or directory, relative to the project root (default: configs/)",
    )
    parser.set_defaults(handler=_cmd_docs)


def build_parser() -> argparse.ArgumentParser:
    """The ``pykratos`` argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="pykratos",
        description="pykratos: scaffold, run and generate code for pykratos services.",
        epilog=(
            "Run 'pykratos COMMAND --help' for the options of a command. Exit status: 0 done; "
            f"2 {EXIT_USAGE_TEXT}; 1 a failure while doing it (protoc rejected the file, an I/O "
            "error such as a full disk); 'run' and 'docs' pass on the service's status."
        ),
    )
    parser.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"pykratos {__version__}",
        help="print the pykratos version and exit",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_new(commands)
    _add_run(commands)
    _add_proto(commands)
    _add_docs(commands)
    return parser


def _cmd_new(args: argparse.Namespace) -> int:
    from framework.cli.scaffold import new_project

    project = new_project(args.name, args.dir)
    print(project.summary())
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from framework.cli.run import run_service

    return run_service(args.conf, reload=args.reload, grace=args.grace)


def _cmd_docs(args: argparse.Namespace) -> int:
    import subprocess

    from framework.cli.run import find_service_root

    root = find_service_root(Path.cwd())
    out = Path(args.out_dir).resolve()
    command = [sys.executable, "-m", "cmd.server", "-conf", args.conf, "--write-docs", str(out)]
    return subprocess.run(command, cwd=root, check=False).returncode


def _cmd_proto_add(args: argparse.Namespace) -> int:
    from framework.cli.proto import add_proto

    written = add_proto(args.path, force=args.force)
    print(f"wrote {written}")
    print(f"next: pykratos proto client {written}")
    return 0


def _report_written(paths: Sequence[Path]) -> int:
    for path in paths:
        print(f"wrote {path}")
    return 0


def _cmd_proto_client(args: argparse.Namespace) -> int:
    from framework.cli.proto import generate_client

    return _report_written(generate_client(args.path, root=args.root, includes=args.includes))


def _cmd_proto_server(args: argparse.Namespace) -> int:
    from framework.cli.proto import generate_server

    done = generate_server(
        args.path, args.target, root=args.root, includes=args.includes, force=args.force
    )
    _report_written([*done.created, *done.packages])
    for path, methods in done.updated.items():
        print(f"added {', '.join(methods)} to {path}")
    for path in done.unchanged:
        print(f"{path} already has a method for every RPC: left as it is")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pykratos`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except CliError as err:
        print(f"pykratos: error: {err}", file=sys.stderr)
        return err.exit_code
    return status


if __name__ == "__main__":
    sys.exit(main())
