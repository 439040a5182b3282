"""Formatting of listen addresses, shared by every server's ``endpoint``."""

from __future__ import annotations

__all__ = ["host_port"]


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host bracketed (``[::1]:8000``) so URLs stay valid."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
