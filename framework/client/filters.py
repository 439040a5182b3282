"""Node filters: keep only the instances a client may call (Kratos' ``selector/filter``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from framework.registry.instance import ServiceInstance

__all__ = ["Filter", "metadata", "version"]

Filter = Callable[[Sequence[ServiceInstance]], list[ServiceInstance]]


def version(wanted: str) -> Filter:
    """Only instances of version ``wanted``."""

    def keep(instances: Sequence[ServiceInstance]) -> list[ServiceInstance]:
        return [i for i in instances if i.version == wanted]

    return keep


def metadata(**wanted: str) -> Filter:
    """Only instances whose metadata has every ``key=value`` of ``wanted``."""

    def keep(instances: Sequence[ServiceInstance]) -> list[ServiceInstance]:
        return [i for i in instances if all(i.metadata.get(k) == v for k, v in wanted.items())]

    return keep
