"""``pykratos proto add``: write a proto skeleton (like ``kratos proto add``)."""

from __future__ import annotations

from pathlib import Path

from framework.cli.exceptions import CliError
from framework.cli.proto.paths import check_proto_name, find_project_root, relative_proto

__all__ = ["add_proto", "proto_package_for", "render_skeleton", "service_name_for"]

_TEMPLATE = """\
syntax = "proto3";

package {package};

// {service}: the API of this service.
//
// Generate the Python messages, gRPC stubs and {stem}_errors.py, next to this file:
//   pykratos proto client {path}
// Write a service-layer class implementing every RPC (each answers UNIMPLEMENTED until filled
// in):
//   pykratos proto server {path} -t <your_package>/service
service {service} {{
  rpc Create{service} (Create{service}Request) returns (Create{service}Reply);
  rpc Update{service} (Update{service}Request) returns (Update{service}Reply);
  rpc Delete{service} (Delete{service}Request) returns (Delete{service}Reply);
  rpc Get{service} (Get{service}Request) returns (Get{service}Reply);
  rpc List{service} (List{service}Request) returns (List{service}Reply);
}}

// Error reasons of this API. `pykratos proto client` writes {stem}_errors.py with
// is_<reason>(err) and error_<reason>(message, **metadata) for every value (values ending in
// UNSPECIFIED excepted). The HTTP status of a reason comes from an `@code=NNN` tag in the
// value's comment; values without one take the enum's `@default_code=NNN` (below), or 500.
// The gRPC status follows from the HTTP one (404 -> NOT_FOUND, 409 -> ABORTED, ...).
// @default_code=500
enum ErrorReason {{
  {reason_prefix}_UNSPECIFIED = 0;
  {reason_prefix}_NOT_FOUND = 1; // @code=404
  {reason_prefix}_INVALID_ARGUMENT = 2; // @code=400
  {reason_prefix}_ALREADY_EXISTS = 3; // @code=409
}}

message Create{service}Request {{
  string name = 1;
}}
message Create{service}Reply {{
  string id = 1;
}}

message Update{service}Request {{
  string id = 1;
  string name = 2;
}}
message Update{service}Reply {{}}

message Delete{service}Request {{
  string id = 1;
}}
message Delete{service}Reply {{}}

message Get{service}Request {{
  string id = 1;
}}
message Get{service}Reply {{
  string id = 1;
  string name = 2;
}}

message List{service}Request {{
  int32 page_size = 1;
  string page_token = 2;
}}
message List{service}Reply {{
  repeated Get{service}Reply items = 1;
  string next_page_token = 2;
}}
"""


def service_name_for(proto: Path) -> str:
    """``order_item.proto`` -> ``OrderItem``: the service (and message prefix) name."""
    parts = [part for part in proto.stem.replace("-", "_").split("_") if part]
    name = "".join(part[:1].upper() + part[1:] for part in parts)
    if not name.isidentifier() or not name.isascii():
        raise CliError(f"cannot derive a service name from {proto.name!r}: use letters, digits, _")
    return name


def proto_package_for(proto: Path) -> str:
    """Proto package from the path: the directories after the last ``api`` segment.

    ``api/billing/v1/x.proto`` -> ``billing.v1``; without an ``api`` segment, the last two
    directories (``billing/v1/x.proto`` -> ``billing.v1``).
    """
    dirs = list(proto.parent.parts)
    if "api" in dirs:
        after = dirs[len(dirs) - dirs[::-1].index("api") :]
    else:
        after = [d for d in dirs if d not in (".", "..")][-2:]
    if not after:
        raise CliError(
            f"cannot derive a proto package from {proto}: put it under api/<name>/<version>/, "
            "e.g. api/billing/v1/billing.proto"
        )
    for part in after:
        if not part.isidentifier() or not part.isascii():
            raise CliError(
                f"directory {part!r} in {proto} is not a valid proto package/Python package name"
            )
    return ".".join(after)


def render_skeleton(proto: Path) -> str:
    """The text ``pykratos proto add`` writes for ``proto``."""
    service = service_name_for(proto)
    return _TEMPLATE.format(
        package=proto_package_for(proto),
        service=service,
        stem=proto.stem,
        path=proto.as_posix(),
        reason_prefix=proto.stem.replace("-", "_").upper(),
    )


def add_proto(proto: Path, *, force: bool = False) -> Path:
    """Write the skeleton for ``proto`` (creating directories); refuse to overwrite.

    Returns the path written. ``force`` overwrites an existing file.

    Raises:
        CliError: exit status 2 for a path that does not end in ``.proto``, lies outside the
            project (the nearest directory above it with a ``pyproject.toml``, else the
            current directory) or has a directory or file name that is not a lowercase,
            non-keyword Python identifier (see :func:`~framework.cli.proto.paths.
            check_proto_name`); 1 for an existing file without ``force``.
    """
    if proto.suffix != ".proto":
        raise CliError(f"{proto} must end in .proto", exit_code=2)
    check_proto_name(relative_proto(proto, find_project_root(proto.parent)).as_posix())
    text = render_skeleton(proto)
    if proto.exists() and not force:
        raise CliError(f"{proto} already exists (use --force to overwrite it)")
    proto.parent.mkdir(parents=True, exist_ok=True)
    proto.write_text(text)
    return proto
