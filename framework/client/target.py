"""Client targets: ``discovery:///<service>`` or static addresses."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Target", "parse_target"]


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed target: a service name to discover, or fixed ``host:port`` addresses."""

    service: str
    addresses: tuple[str, ...] = ()

    @property
    def discovered(self) -> bool:
        return not self.addresses


def parse_target(target: str) -> Target:
    """Parse ``discovery:///orders`` (Kratos' form), or ``host:port[,host:port...]`` with an
    optional ``grpc://`` / ``http://`` / ``direct:///`` prefix.

    Raises ``ValueError`` for a discovery target without a service name or an address
    without a port.
    """
    if target.startswith("discovery:"):
        parts = urlsplit(target)
        name = parts.path.lstrip("/") or parts.netloc
        if not name:
            raise ValueError(f"no service name in {target!r}; expected discovery:///<name>")
        return Target(service=name)
    rest = target.split("://", 1)[1] if "://" in target else target
    addresses = tuple(a.strip().strip("/") for a in rest.split(",") if a.strip().strip("/"))
    if not addresses:
        raise ValueError(f"no address in target {target!r}")
    for address in addresses:
        _, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"address {address!r} in {target!r} must be host:port")
    return Target(service=",".join(addresses), addresses=addresses)
