"""Validation: reject a request that fails its own checks with 400 ``VALIDATOR``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from framework.errors import BadRequest, Error
from framework.middleware.core import Handler, Middleware
from framework.validation import VALIDATOR, excerpt, validation_error

__all__ = ["VALIDATOR", "validate"]
Validator = Callable[[Any], Any]


def validate(validators: Mapping[type, Validator] | None = None) -> Middleware:
    """Validate each request before the handler runs.

    A request is checked by the validator registered for its type in ``validators`` (exact type
    first, then base classes), else by its own ``validate()`` method if it has one (like
    protoc-gen-validate's ``Validate()``); requests with neither pass through. A validator
    signals failure by raising (``ValueError``, pydantic ``ValidationError``, an
    :class:`Error`) or by returning ``False``; it may be async.
    """
    registry = dict(validators or {})
    # The choice depends only on the request's type: decide once per type, not per request.
    resolved: dict[type, Validator | None] = {}

    def resolve(cls: type) -> Validator | None:
        for base in cls.__mro__:
            if base in registry:
                return registry[base]
        method = inspect.getattr_static(cls, "validate", None)
        # pydantic models have a classmethod ``validate`` (deprecated v1 API): skip it.
        if callable(method) and not isinstance(method, (classmethod, staticmethod)):
            return lambda req: req.validate()
        return None

    def find(request: Any) -> Validator | None:
        cls = type(request)
        try:
            return resolved[cls]
        except KeyError:
            check = resolved[cls] = resolve(cls)
            return check

    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            check = find(request)
            if check is not None:
                try:
                    outcome = check(request)
                    if inspect.isawaitable(outcome):
                        outcome = await outcome
                except Error as exc:
                    if exc.code == 400:
                        raise
                    raise BadRequest(VALIDATOR, excerpt(exc.message or exc.reason)) from exc
                except ValidationError as exc:
                    raise validation_error(exc) from exc
                except (ValueError, TypeError, AssertionError) as exc:
                    # The text may quote the request: cut it like any echo of client input.
                    raise BadRequest(VALIDATOR, excerpt(exc)) from exc
                if outcome is False:
                    raise BadRequest(VALIDATOR, f"invalid {type(request).__name__}")
            return await handler(request)

        return run

    return middleware
