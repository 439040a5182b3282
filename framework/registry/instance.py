"""A service instance as the registry stores it (Kratos' ``registry.ServiceInstance``).

Stored as JSON with Kratos' field names (``id``, ``name``, ``version``, ``metadata``,
``endpoints``), so a Go Kratos service and a pykratos one can read each other's entries.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from framework.transport.address import host_port

__all__ = ["ServiceInstance", "advertised_endpoints", "default_advertise_host"]

# A server bound to one of these listens everywhere: the registry needs a reachable address.
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})


@dataclass(frozen=True, slots=True)
class ServiceInstance:
    """One running instance of a service.

    Attributes:
        id: unique per instance (the App's id).
        name: service name that clients resolve (``discovery:///<name>``).
        version: service version; clients may filter on it.
        metadata: free-form strings (``weight`` is read by the weighted round robin balancer).
        endpoints: URLs such as ``grpc://10.0.0.7:9000`` and ``http://10.0.0.7:8000``.
    """

    id: str
    name: str
    version: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    endpoints: tuple[str, ...] = ()

    def endpoint(self, scheme: str) -> str | None:
        """The ``host:port`` of the first endpoint with ``scheme`` (``"grpc"``, ``"http"``)."""
        for url in self.endpoints:
            parts = urlsplit(url)
            if parts.scheme == scheme and parts.netloc:
                return parts.netloc
        return None

    def to_json(self) -> bytes:
        """The JSON value stored in the registry (Kratos' field names)."""
        return json.dumps(
            {
                "id": self.id,
                "name": self.name,
                "version": self.version,
                "metadata": dict(self.metadata),
                "endpoints": list(self.endpoints),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ServiceInstance:
        """Parse :meth:`to_json`'s form. Raises ``ValueError`` on a malformed value."""
        raw = json.loads(data)
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise ValueError(f"not a service instance: {data!r}")
        metadata = raw.get("metadata") or {}
        return cls(
            id=raw["id"],
            name=str(raw.get("name", "")),
            version=str(raw.get("version", "")),
            metadata={str(k): str(v) for k, v in metadata.items()},
            endpoints=tuple(str(e) for e in raw.get("endpoints") or ()),
        )


def default_advertise_host() -> str:
    """This machine's address as its hostname resolves, else ``127.0.0.1``.

    Used for servers bound to a wildcard address when no advertised host is configured; in a
    container the hostname resolves to the pod/container IP.
    """
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return address or "127.0.0.1"


def advertised_endpoints(endpoints: Iterable[str], host: str | None = None) -> tuple[str, ...]:
    """Endpoints with a wildcard host (``0.0.0.0``, ``::``) replaced by a reachable one.

    ``host`` is the advertised host (config); ``None`` uses :func:`default_advertise_host`. A
    server's ``endpoint`` already carries its real port once started (port 0 resolved), so
    the App calls this after every server is ready. A set ``host`` replaces every endpoint's
    host, wildcard or not: it is how a service behind NAT or in a pod says how to reach it.
    """
    result: list[str] = []
    fallback: str | None = None
    for url in endpoints:
        parts = urlsplit(url)
        if parts.port is None or parts.hostname is None:
            result.append(url)
            continue
        if host is not None:
            target = host
        elif parts.hostname in _WILDCARDS:
            fallback = fallback or default_advertise_host()
            target = fallback
        else:
            result.append(url)
            continue
        result.append(f"{parts.scheme}://{host_port(target, parts.port)}")
    return tuple(result)
