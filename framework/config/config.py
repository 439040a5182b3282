"""The :class:`Config` object and :func:`load`: sources -> merge -> placeholders -> env.

``load("configs/", env_prefix="APP_")`` reads every YAML/JSON file of the directory in name
order, deep-merges them, resolves ``${VAR:default}`` placeholders, applies ``APP_...``
environment overrides and remembers where every value came from, so that
``config.scan(Bootstrap)`` can report ``configs/config.yaml:4: server.http.port: ...``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from framework.config.env import apply_env_overrides
from framework.config.errors import ConfigError
from framework.config.merge import merge_documents
from framework.config.placeholders import resolve_placeholders
from framework.config.scan import validate
from framework.config.sources import read_sources
from framework.config.tree import KeyPath, Origin, format_key, nearest_origin, prune, resolve_key
from framework.config.watch import ConfigWatcher, WatchCallback, WatchRegistry

__all__ = ["Config", "load"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Snapshot:
    data: dict[str, Any]
    origins: dict[KeyPath, Origin]


def load(
    path: str | os.PathLike[str],
    *,
    env_prefix: str = "",
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load a config file or directory.

    Args:
        path: a YAML/JSON file, or a directory whose ``*.yaml``/``*.yml``/``*.json`` files
            are merged in name order (later files win; mappings merge, lists are replaced).
        env_prefix: e.g. ``"APP_"``: ``APP_SERVER__HTTP__PORT=9000`` then overrides
            ``server.http.port``. Empty (the default) disables env overrides.
        environ: the variables for placeholders and overrides; ``os.environ`` (read again
            at every reload) when omitted.

    Raises:
        ConfigError: a missing path, a parse error (file and line), an unset variable
            without default (file, line and key), or a bad env override.
    """
    return Config(Path(path), env_prefix=env_prefix, environ=environ)


class Config:
    """A loaded configuration: dotted-key reads, typed scans and watched keys.

    Reads see the latest successful (re)load; a failed reload leaves them unchanged.
    """

    def __init__(
        self,
        source: Path,
        *,
        env_prefix: str = "",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.source = source
        self.env_prefix = env_prefix
        self._environ = environ
        self._snapshot = self._build()
        # (dotted key, model) of every successful scan: the rules a reload must pass.
        self._schemas: list[tuple[str, Any]] = []
        self._watches = WatchRegistry(self.get)
        self._watcher: ConfigWatcher | None = None

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str = "", default: Any = None) -> Any:
        """The value at a dotted key (``"server.http.port"``, ``"hosts.0"``; ``""`` = all).

        Returns a copy, so changing it does not change the config; ``default`` if absent.
        """
        found = resolve_key(self._snapshot.data, key)
        return default if found is None else copy.deepcopy(found[1])

    def origin(self, key: str) -> str | None:
        """Where the value at ``key`` came from (``"configs/a.yaml:3"``, ``"env APP_X"``)."""
        snapshot = self._snapshot
        found = resolve_key(snapshot.data, key)
        return None if found is None else str(nearest_origin(snapshot.origins, found[0]))

    def scan(self, model: type[T]) -> T:
        """Validate the whole config as ``model`` (pydantic model, dataclass, TypedDict...).

        A successful scan also becomes a rule for every later reload (see :meth:`reload`).

        Raises:
            ConfigError: one line per problem, each naming the file or env var and the key.
        """
        result = _validate_at(self._snapshot, "", model)
        self._remember("", model)
        return result

    def value(self, key: str, model: type[T]) -> T:
        """Validate the value at dotted ``key`` as ``model``; a missing key is an error.

        Like :meth:`scan`, a successful call also validates every later reload.
        """
        result = _validate_at(self._snapshot, key, model)
        self._remember(key, model)
        return result

    # -- reloading and watching ------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the sources now; on :class:`ConfigError` the old values stay.

        The new tree must pass every model this config was scanned with (:meth:`scan`,
        :meth:`value`): a change that the next start would refuse (a misspelt key, a bad
        value) is refused now too, with the same file, line and key, instead of being
        accepted until the restart. Watch callbacks are driven by :meth:`watcher`, not by
        this method.

        Raises:
            ConfigError: the sources cannot be read or the new values do not validate.
        """
        snapshot = self._build()
        for key, model in list(self._schemas):
            _validate_at(snapshot, key, model)
        self._snapshot = snapshot

    def watch(
        self, key: str, callback: WatchCallback, *, debounce: float = 0.2
    ) -> Callable[[], None]:
        """Call ``callback(new_value)`` when ``key``'s value changes on reload.

        The callback (sync or async) runs once the key has been stable for ``debounce``
        seconds, with the final value, and only if it differs from the last one delivered.
        Needs the :meth:`watcher` running. Returns a function that cancels this watch.
        """
        return self._watches.add(key, callback, debounce)

    def watcher(self) -> ConfigWatcher:
        """The file watcher of this config (one per config); pass it to ``App(resources=[...])``
        or call its ``start()`` / ``close()`` yourself."""
        if self._watcher is None:
            directory = self.source if self.source.is_dir() else self.source.parent
            self._watcher = ConfigWatcher([directory], self.reload, self._watches)
        return self._watcher

    # -- internals -------------------------------------------------------------------------

    def _remember(self, key: str, model: Any) -> None:
        if (key, model) not in self._schemas:
            self._schemas.append((key, model))

    def _build(self) -> _Snapshot:
        environ = os.environ if self._environ is None else self._environ
        data, origins = merge_documents(read_sources(self.source))
        data = resolve_placeholders(data, origins, environ)
        apply_env_overrides(data, origins, self.env_prefix, environ)
        origins = prune(data, origins)
        # Errors about top-level keys point at the source the user passed (file or dir).
        origins[()] = Origin(str(self.source))
        return _Snapshot(data, origins)

    def __repr__(self) -> str:
        return f"Config(source={str(self.source)!r}, env_prefix={self.env_prefix!r})"


def _validate_at(snapshot: _Snapshot, key: str, model: type[T]) -> T:
    """Validate the value at dotted ``key`` (``""``: the whole tree) of ``snapshot``."""
    found = resolve_key(snapshot.data, key)
    if found is None:
        path = tuple(key.split("."))
        where = nearest_origin(snapshot.origins, path)
        raise ConfigError(f"{where}: {format_key(path)}: key not found")
    return validate(model, found[1], found[0], snapshot.origins)
