"""Shape checks for broker addresses (URLs, ``host:port`` lists), run when options are built.

Every broker calls these from its own option checks (its constructor or options dataclass
``__post_init__``), so a config check (:func:`~framework.broker.options_schema.
validate_broker_options` builds the options) and direct construction refuse the same values,
before any connection is tried. Each message starts with the option's name, so a config error
is located at that option (``APP_DATA__BROKER__OPTIONS__URL: url must be ...``).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import SplitResult, urlsplit

__all__ = ["check_host_ports", "check_url", "check_urls"]


def _port_problem(parts: SplitResult) -> str | None:
    try:
        port = parts.port  # ValueError for a non-number or one outside 0..65535
    except ValueError:
        return "its port must be a number from 1 to 65535"
    if port == 0:
        return "its port must be a number from 1 to 65535"
    return None


def check_url(
    option: str, value: str, schemes: Sequence[str], *, hostless: Sequence[str] = ()
) -> None:
    """Refuse ``value`` unless it is ``scheme://[user[:password]@]host[:port][/...]`` with a
    scheme of ``schemes``; a scheme in ``hostless`` (``unix``) needs a path instead of a host.

    Raises:
        ValueError: ``<option> must be a scheme:// URL ..., got '...'`` (one line).
    """
    names = [f"{scheme}://" for scheme in schemes]
    allowed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    parts = urlsplit(value.strip())
    problem: str | None = None
    if parts.scheme not in schemes:
        problem = f"its scheme is {parts.scheme!r}" if parts.scheme else "it has no scheme"
    elif parts.scheme in hostless:
        problem = None if parts.path else "it names no socket path"
    elif not parts.hostname:
        problem = "it names no host"
    else:
        problem = _port_problem(parts)
    if problem is not None:
        raise ValueError(f"{option} must be a {allowed} URL; {problem}, got {value!r}")


def check_urls(option: str, value: str, schemes: Sequence[str]) -> None:
    """:func:`check_url` on each entry of a comma-separated list, which must not be empty."""
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    if not entries:
        raise ValueError(f"{option} must be one or more URLs separated by commas, got {value!r}")
    for entry in entries:
        check_url(option, entry, schemes)


def check_host_ports(option: str, value: str) -> None:
    """Refuse ``value`` unless it is ``host:port[,host:port...]`` (no scheme; ``[::1]:9092``
    for IPv6), as Kafka's ``bootstrap.servers`` is.

    Raises:
        ValueError: ``<option> must be host:port[,host:port...]; ..., got '...'`` (one line).
    """
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    problem: str | None = None if entries else "it names none"
    for entry in entries:
        if "://" in entry or "/" in entry:
            problem = f"{entry!r} is a URL or path, not host:port"
            break
        parts = urlsplit(f"//{entry}")
        port_problem = _port_problem(parts)
        if not parts.hostname:
            problem = f"{entry!r} names no host"
        elif port_problem is not None:
            problem = f"{entry!r}: {port_problem}"
        elif parts.port is None:
            problem = f"{entry!r} has no port"
        if problem is not None:
            break
    if problem is not None:
        raise ValueError(f"{option} must be host:port[,host:port...]; {problem}, got {value!r}")
