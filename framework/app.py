"""The App: one process, many servers, an ordered start and a graceful stop.

Start: resources -> before-start hooks -> ``bind_app(app)`` on every server that has it (the
HTTP server, which serves the App's AsyncAPI document) -> every server started (concurrently;
all ready) -> readiness on -> registered in the ``registrar`` (if any) -> a warning for any
broker ``Router`` mounted on no broker server -> after-start hooks.

Stop (SIGTERM/SIGINT, :meth:`App.stop` or leaving the ``async with`` block) runs in this
order, intake and drain being two separate phases:

0. deregistered from the ``registrar`` (if any) -> ``deregister_delay``, so clients watching
   the registry stop picking this instance while it still serves;
1. before-stop hooks -> readiness off (HTTP ``/readyz`` 503, gRPC health NOT_SERVING) ->
   optional ``drain_delay``;
2. **intake stops everywhere at once**: ``stop_intake()`` on every server that has it
   (:class:`~framework.transport.server.IntakeAware`: listeners close, new calls are refused,
   Kafka/RabbitMQ consumers stop fetching), so no server takes new work while another drains;
3. **drain in reverse start order**: ``stop(remaining)`` on each server, which finishes its
   in-flight work within what is left of ``stop_timeout`` (final commits/acks), then closes.
   List the servers that feed others after them: the reference service lists its broker
   servers first, so the embedded memory broker drains last and still handles what HTTP
   requests published while they finished;
4. resources closed (reverse order) -> after-stop hooks.

A server that fails to start stops the ones that did and raises :class:`AppStartError`, naming
the server and the cause; :meth:`App.main` logs it and turns it into exit status 1.
A second SIGTERM/SIGINT during the stop cancels in-flight work so the stop ends at once;
:meth:`App.main` then returns ``128 + signal number`` (143, 130), not 0.

Readiness is on while the App serves and no server reports a health problem
(:class:`~framework.transport.server.HealthReporting`, e.g. a broker subscriber that cannot
re-subscribe); it turns off, and back on, as those problems come and go.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from framework.log import setup_logging
from framework.registry.contract import Registrar
from framework.registry.instance import ServiceInstance, advertised_endpoints
from framework.transport.server import HealthReporting, IntakeAware, ReadinessAware, Server

__all__ = ["App", "AppInfo", "AppStartError", "Hook", "app_info"]

Hook = Callable[[], Awaitable[None] | None]
_log = logging.getLogger("pykratos.app")


@dataclass(frozen=True, slots=True)
class AppInfo:
    """Identity of the running service, readable anywhere through :func:`app_info`."""

    id: str
    name: str
    version: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    endpoints: tuple[str, ...] = ()


_current_app: contextvars.ContextVar[AppInfo | None] = contextvars.ContextVar(
    "pykratos_app", default=None
)


def app_info() -> AppInfo | None:
    """The :class:`AppInfo` of the App running in this context, if any."""
    return _current_app.get()


class AppStartError(RuntimeError):
    """A server or resource failed to start; the message names it and the cause."""


def _describe(component: object) -> str:
    name = getattr(component, "name", None)
    label = type(component).__name__
    return f"{label}({name})" if isinstance(name, str) and name else label


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _call(fn: Callable[..., Any] | None) -> None:
    if fn is None:
        return
    result = fn()
    if inspect.isawaitable(result):
        await result


def _warn_unmounted_routers() -> None:
    # Broker routers can only exist if their module was imported: looking it up rather than
    # importing it keeps the broker package out of an App that has no broker at all.
    router_module = sys.modules.get("framework.broker.router")
    if router_module is not None:
        router_module.warn_unmounted_routers()


class App:
    """Owns the process lifecycle of a service.

    Args:
        name: service name (logs, AppInfo).
        version: service version.
        id: instance id; a random UUID by default.
        metadata: free-form string metadata exposed in AppInfo.
        servers: the servers to run, started concurrently; on stop their intake stops at once,
            then they drain in reverse order (see the module docstring).
        resources: objects started before the servers (``start()``/``connect()`` if present)
            and closed after them (``close()``/``aclose()``/``stop()``), e.g. a DB engine
            holder or a broker connection.
        before_start, after_start, before_stop, after_stop: hooks, sync or async, no args.
        stop_timeout: seconds the whole stop may take (intake stop and every drain); each
            server drains within what is left.
        drain_delay: seconds to wait between readiness off and stopping servers, so load
            balancers notice before connections are refused (0 by default).
        handle_signals: install SIGTERM/SIGINT handlers in :meth:`run` (off in tests that
            drive the App themselves).
        registrar: a :class:`~framework.registry.Registrar` (etcd, static...): the App
            registers its :attr:`instance` once every server is ready (a failure fails the
            start) and deregisters it first when it stops.
        deregister_delay: seconds to wait after deregistering, before anything else stops, so
            clients watching the registry notice (0 by default).
        advertise_host: host put in the registered endpoints instead of the servers' bind
            address; ``None`` replaces only wildcard binds (``0.0.0.0``) with this machine's
            address (:func:`~framework.registry.advertised_endpoints`).
    """

    def __init__(
        self,
        name: str,
        *,
        version: str = "",
        id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        servers: Sequence[Server] = (),
        resources: Sequence[object] = (),
        before_start: Iterable[Hook] = (),
        after_start: Iterable[Hook] = (),
        before_stop: Iterable[Hook] = (),
        after_stop: Iterable[Hook] = (),
        stop_timeout: float = 10.0,
        drain_delay: float = 0.0,
        handle_signals: bool = True,
        registrar: Registrar | None = None,
        deregister_delay: float = 0.0,
        advertise_host: str | None = None,
    ) -> None:
        if stop_timeout <= 0:
            raise ValueError(f"stop_timeout must be positive, got {stop_timeout}")
        if deregister_delay < 0:
            raise ValueError(f"deregister_delay must be >= 0, got {deregister_delay}")
        self.name = name
        self.version = version
        self.id = id or str(uuid.uuid4())
        self.metadata = dict(metadata or {})
        self.servers = list(servers)
        self.resources = list(resources)
        self.before_start = list(before_start)
        self.after_start = list(after_start)
        self.before_stop = list(before_stop)
        self.after_stop = list(after_stop)
        self.stop_timeout = stop_timeout
        self.drain_delay = drain_delay
        self.handle_signals = handle_signals
        self.registrar = registrar
        self.deregister_delay = deregister_delay
        self.advertise_host = advertise_host
        self._registered: ServiceInstance | None = None
        self._stop_requested: asyncio.Event | None = None
        self._started_servers: list[Server] = []
        self._started_resources: list[object] = []
        self._token: contextvars.Token[AppInfo | None] | None = None
        self._signal_count = 0
        self._forced_by: signal.Signals | None = None
        self._run_task: asyncio.Task[Any] | None = None
        self._serving = False
        self._health_problems: list[str] = []

    # -- public API ------------------------------------------------------------------------

    @property
    def info(self) -> AppInfo:
        """Identity and (after start) the endpoints of every server."""
        endpoints = tuple(s.endpoint for s in self._started_servers if s.endpoint)
        return AppInfo(self.id, self.name, self.version, self.metadata, endpoints)

    @property
    def instance(self) -> ServiceInstance:
        """What the App registers: its identity and its servers' advertised endpoints."""
        info = self.info
        endpoints = advertised_endpoints(info.endpoints, self.advertise_host)
        return ServiceInstance(info.id, info.name, info.version, dict(info.metadata), endpoints)

    async def run(self) -> None:
        """Start, wait for a signal or :meth:`stop`, then stop gracefully.

        Raises :class:`AppStartError` if anything failed to start (after cleaning up).
        """
        await self.start()
        self._run_task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread
                    _log.warning("cannot install a handler for %s", sig.name)
        try:
            assert self._stop_requested is not None
            await self._stop_requested.wait()
        finally:
            await self.shutdown()
            for sig in installed:
                loop.remove_signal_handler(sig)

    def main(self, *, uvloop: bool | None = None, log: bool = True) -> int:
        """Run the App in a new event loop; return the process exit status.

        Use it as ``raise SystemExit(app.main())``. The status is 0 after a graceful stop, 1
        when the App failed to start, and ``128 + signal number`` when a second signal forced
        the stop (130 after SIGINT twice, 143 after SIGTERM twice, as a shell reports a process
        killed by that signal): the drain was cut short, so in-flight work may have been lost.

        ``uvloop`` picks the event loop: ``None`` (default) uses uvloop when it is installed
        (it comes with the ``http`` extra), ``False`` forces the standard asyncio loop.
        ``log=True`` (default) sets up console logging at INFO on stderr
        (:func:`framework.log.setup_logging`) unless the root logger already has a handler,
        so the start/stop lines and a start failure are seen; ``log=False`` leaves logging
        alone.
        """
        if log and not logging.getLogger().handlers:
            setup_logging()
        loop_factory = _uvloop_factory() if uvloop is not False else None
        if uvloop and loop_factory is None:
            raise RuntimeError("uvloop=True but uvloop is not installed (pip install uvloop)")
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(self.run())
        except AppStartError as exc:
            _log.error("%s failed to start: %s", self.name, exc)
            return 1
        if self._forced_by is not None:
            return 128 + int(self._forced_by)
        return 0

    def stop(self) -> None:
        """Ask a running App to stop (what SIGTERM does); returns at once."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Run the start sequence; on any failure undo what started and raise."""
        self._stop_requested = asyncio.Event()
        self._token = _current_app.set(self.info)
        started_at = time.perf_counter()
        try:
            for resource in self.resources:
                await self._start_resource(resource)
            for hook in self.before_start:
                await self._run_start_hook(hook, "before-start")
            for server in self.servers:
                # A server that documents the App (the HTTP server's /asyncapi.json) learns
                # which App it runs in.
                bind_app = getattr(server, "bind_app", None)
                if callable(bind_app):
                    bind_app(self)
            await self._start_servers()
            for server in self._started_servers:
                if isinstance(server, HealthReporting):
                    server.watch_health(self._apply_readiness)
        except BaseException:
            await self._release()
            self._stop_requested = None
            raise
        self._set_serving(True)
        try:
            await self._register()
        except BaseException:
            await self._release()
            self._stop_requested = None
            raise
        _warn_unmounted_routers()
        _current_app.set(self.info)
        _log.info(
            "%s %s started in %.0f ms",
            self.name,
            self.version,
            (time.perf_counter() - started_at) * 1000,
            extra={"app_id": self.id, "endpoints": list(self.info.endpoints)},
        )
        try:
            for hook in self.after_start:
                await self._run_start_hook(hook, "after-start")
        except BaseException:
            # The servers are serving and the caller gets no App to stop (``run`` and
            # ``async with`` both end here): stop them now, not at interpreter exit.
            await self.shutdown()
            raise

    async def shutdown(self) -> None:
        """Run the stop sequence once; safe to call twice."""
        if self._stop_requested is None:
            return
        self._stop_requested.set()
        self._stop_requested = None
        _log.info("%s stopping (timeout %.1fs)", self.name, self.stop_timeout)
        await self._deregister()
        for hook in self.before_stop:
            await self._guarded(hook, "before-stop hook")
        self._set_serving(False)
        if self.drain_delay > 0:
            await asyncio.sleep(self.drain_delay)
        await self._release()
        for hook in self.after_stop:
            await self._guarded(hook, "after-stop hook")
        _log.info("%s stopped", self.name)

    # -- internals -------------------------------------------------------------------------

    async def _register(self) -> None:
        if self.registrar is None:
            return
        instance = self.instance
        try:
            await self.registrar.register(instance)
        except Exception as exc:
            raise AppStartError(
                f"registration in {_describe(self.registrar)} failed: {exc!r}"
            ) from exc
        self._registered = instance
        _log.info(
            "registered %s as %s",
            instance.name,
            instance.id,
            extra={"endpoints": list(instance.endpoints)},
        )

    async def _deregister(self) -> None:
        """Stop phase zero: leave the registry, then give clients ``deregister_delay``."""
        instance, self._registered = self._registered, None
        if self.registrar is None or instance is None:
            return
        registrar = self.registrar
        await self._guarded(lambda: registrar.deregister(instance), "deregistering")
        if self.deregister_delay > 0:
            await asyncio.sleep(self.deregister_delay)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signal_count += 1
        if self._signal_count == 1:
            _log.info("received %s, stopping gracefully", sig.name)
            self.stop()
        else:
            # A second signal means "now": cancel in-flight work so every drain ends at once,
            # but not the task running the stop sequence, which still closes everything.
            _log.warning("received %s again, cancelling in-flight work", sig.name)
            self._forced_by = sig
            for task in asyncio.all_tasks():
                if task is not self._run_task:
                    task.cancel()

    async def _run_start_hook(self, hook: Hook, stage: str) -> None:
        try:
            await _call(hook)
        except Exception as exc:
            # AppStartError, so main() reports it like any start failure (exit 1, no traceback).
            name = getattr(hook, "__qualname__", repr(hook))
            raise AppStartError(f"{stage} hook {name} failed: {exc!r}") from exc

    async def _start_resource(self, resource: object) -> None:
        starter = getattr(resource, "start", None) or getattr(resource, "connect", None)
        try:
            await _call(starter)
        except Exception as exc:
            raise AppStartError(f"resource {_describe(resource)} failed: {exc!r}") from exc
        self._started_resources.append(resource)

    async def _start_servers(self) -> None:
        results = await asyncio.gather(
            *(server.start() for server in self.servers), return_exceptions=True
        )
        # Every server is stopped on failure, even a half-started one that may hold a socket:
        # the Server contract makes stop() safe on a server whose start failed.
        self._started_servers.extend(self.servers)
        failures: list[str] = []
        first: BaseException | None = None
        for server, result in zip(self.servers, results, strict=True):
            if isinstance(result, BaseException):
                failures.append(f"{_describe(server)}: {result!r}")
                first = first or result
        if failures:
            raise AppStartError("server failed to start: " + "; ".join(failures)) from first

    def _set_serving(self, serving: bool) -> None:
        self._serving = serving
        self._apply_readiness()

    def _apply_readiness(self) -> None:
        # Ready while serving and no server reports a problem it cannot recover from (e.g.
        # a broker subscriber that cannot re-subscribe): /readyz and gRPC health follow.
        problems = [
            problem
            for server in self._started_servers
            if isinstance(server, HealthReporting) and (problem := server.health_problem)
        ]
        if self._serving and problems != self._health_problems:
            if problems:
                _log.warning("%s not ready: %s", self.name, "; ".join(problems))
            else:
                _log.warning("%s ready again: every server recovered", self.name)
        self._health_problems = problems
        ready = self._serving and not problems
        for server in self._started_servers:
            if isinstance(server, ReadinessAware):
                server.set_serving(ready)

    async def _release(self) -> None:
        deadline = time.monotonic() + self.stop_timeout
        await self._stop_intake(deadline)
        while self._started_servers:
            server = self._started_servers.pop()
            remaining = max(deadline - time.monotonic(), 0.01)
            try:
                # The server drains within ``remaining``; the extra second covers its close.
                await asyncio.wait_for(server.stop(remaining), remaining + 1.0)
            except TimeoutError:
                _log.error("%s did not stop within %.1fs", _describe(server), remaining)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # this stop sequence itself is being cancelled
                # A second signal cancelled the server's own work: it is stopped, move on.
                _log.warning("%s: stop cut short by a forced exit", _describe(server))
            except Exception:
                _log.exception("%s failed to stop", _describe(server))
        while self._started_resources:
            resource = self._started_resources.pop()
            closer = (
                getattr(resource, "close", None)
                or getattr(resource, "aclose", None)
                or getattr(resource, "stop", None)
            )
            await self._guarded(closer, f"closing {_describe(resource)}")
        if self._token is not None:
            # The token is only valid in the context that set it (a pytest fixture may tear
            # down elsewhere); clearing the value is enough then.
            try:
                _current_app.reset(self._token)
            except ValueError:
                _current_app.set(None)
            self._token = None

    async def _stop_intake(self, deadline: float) -> None:
        """Phase one of the stop: every server refuses new work, all at once."""
        servers = [s for s in self._started_servers if isinstance(s, IntakeAware)]
        if not servers:
            return
        tasks = {asyncio.create_task(s.stop_intake()): s for s in servers}
        # stop_intake must not wait for in-flight work; one that hangs anyway is bounded by the
        # stop timeout and logged, and its server's stop() still runs after.
        done, late = await asyncio.wait(tasks, timeout=max(deadline - time.monotonic(), 0.01))
        for task in late:
            _log.error("%s did not stop its intake in time", _describe(tasks[task]))
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                _log.error(
                    "%s failed to stop its intake",
                    _describe(tasks[task]),
                    exc_info=task.exception(),
                )

    async def _guarded(self, fn: Callable[..., Any] | None, what: str) -> None:
        try:
            await _call(fn)
        except Exception:
            _log.exception("%s failed", what)
