"""The one exception type of the config package."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """A config source could not be read, parsed, resolved or validated.

    The message always names where the problem is: the file (and line when known) or the
    environment variable, then the dotted key, e.g.
    ``configs/config.yaml:4: server.http.port: Input should be a valid integer, got 'abc'``.
    A message may hold several such lines, one per problem.
    """
