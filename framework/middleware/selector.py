"""Apply middleware only to some operations (go-kratos' ``selector``).

Example::

    auth_only_orders = selector(auth()).prefix("/order.v1.").path("GET /v1/orders/{id}").build()

The match is made at call time against ``from_context().operation``, so one selector works
for every transport.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from framework.middleware.core import Handler, Middleware, chain, declare_errors, declared_errors
from framework.transport.context import from_context

__all__ = ["Selector", "selector"]


class Selector:
    """Builder for a middleware that runs ``middlewares`` only on matching operations.

    Operations match by exact name (:meth:`path`), prefix (:meth:`prefix`), regular expression
    (:meth:`regex`) or an arbitrary predicate (:meth:`match`); any matching rule selects.
    Optionally restrict to transport kinds with :meth:`kind`.
    """

    def __init__(self, *middlewares: Middleware) -> None:
        self._middlewares = middlewares
        self._paths: set[str] = set()
        self._prefixes: list[str] = []
        self._regexes: list[re.Pattern[str]] = []
        self._predicates: list[Callable[[str], bool]] = []
        self._kinds: set[str] = set()

    def path(self, *operations: str) -> Selector:
        """Select these exact operation names."""
        self._paths.update(operations)
        return self

    def prefix(self, *prefixes: str) -> Selector:
        """Select operations starting with any of ``prefixes``."""
        self._prefixes.extend(prefixes)
        return self

    def regex(self, *patterns: str) -> Selector:
        """Select operations fully matching any of ``patterns``."""
        self._regexes.extend(re.compile(p) for p in patterns)
        return self

    def match(self, predicate: Callable[[str], bool]) -> Selector:
        """Select operations for which ``predicate(operation)`` is true."""
        self._predicates.append(predicate)
        return self

    def kind(self, *kinds: str) -> Selector:
        """Only select on these transport kinds (``"http"``, ``"grpc"``, ...)."""
        self._kinds.update(kinds)
        return self

    def matches(self, operation: str) -> bool:
        """True when ``operation`` is selected by any rule."""
        return (
            operation in self._paths
            or any(operation.startswith(p) for p in self._prefixes)
            or any(r.fullmatch(operation) for r in self._regexes)
            or any(pred(operation) for pred in self._predicates)
        )

    def build(self) -> Middleware:
        """The middleware: the selected chain for matching operations, a pass-through otherwise."""
        selected = chain(*self._middlewares)

        def middleware(handler: Handler) -> Handler:
            wrapped = selected(handler)
            # Decide per operation once; operations are a small, fixed set per process.
            decisions: dict[tuple[str, str], bool] = {}

            async def run(request: Any) -> Any:
                transport = from_context()
                if transport is None:
                    return await handler(request)
                key = (transport.kind, transport.operation)
                chosen = decisions.get(key)
                if chosen is None:
                    kind_ok = not self._kinds or transport.kind in self._kinds
                    chosen = decisions[key] = kind_ok and self.matches(transport.operation)
                return await (wrapped if chosen else handler)(request)

            return run

        def errors(kind: str, operation: str) -> dict[int, str]:
            if (self._kinds and kind not in self._kinds) or not self.matches(operation):
                return {}
            return declared_errors(self._middlewares, kind, operation)

        return declare_errors(middleware, errors)


def selector(*middlewares: Middleware) -> Selector:
    """Start a :class:`Selector` for ``middlewares``; finish it with ``.build()``."""
    return Selector(*middlewares)
