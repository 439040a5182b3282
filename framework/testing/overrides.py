"""Dependency overrides: a container provider swapped for a fake, undone after.

A thin wrapper over dependency-injector's own ``provider.override()`` (the well-kept
primitive): a plain object is wrapped in ``providers.Object`` so ``override(c.repo, fake)``
reads like the intent. Singletons are built once: override a provider *before* the objects
that depend on it are built (before ``wire_app`` builds the servers, in the reference service).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from dependency_injector import providers

__all__ = ["Overrides", "override"]


def _as_provider(fake: Any) -> providers.Provider[Any]:
    return fake if isinstance(fake, providers.Provider) else providers.Object(fake)


@contextlib.contextmanager
def override(provider: providers.Provider[Any], fake: Any) -> Iterator[Any]:
    """``with override(container.order_repo, FakeRepo()):`` the provider returns ``fake``
    (or what ``fake`` provides, when it is itself a provider); undone at exit. Yields
    ``fake``."""
    with provider.override(_as_provider(fake)):
        yield fake


class Overrides:
    """Several overrides undone together (the ``dependency_overrides`` fixture).

    ``overrides(container.order_repo, fake)`` overrides now; :meth:`reset` undoes every one,
    most recent first.
    """

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def __call__(self, provider: providers.Provider[Any], fake: Any) -> Any:
        """Override ``provider`` with ``fake`` until :meth:`reset`; return ``fake``."""
        return self._stack.enter_context(override(provider, fake))

    def reset(self) -> None:
        """Undo every override."""
        self._stack.close()
        self._stack = contextlib.ExitStack()
