"""etcd registry: a lease per instance, keep-alive, re-registration, watch with resync.

Layout (Kratos' etcd registry): key ``<namespace>/<service name>/<instance id>``, value the
instance JSON (:meth:`ServiceInstance.to_json`), attached to a lease of ``ttl`` seconds. The
lease is kept alive every ``ttl / 3`` s. When a keep-alive fails or etcd answers that the
lease is gone (etcd restarted empty, the lease expired during a partition), the instance is
put again under a new lease, retried every ``retry_interval`` s until etcd answers: the
instance never silently vanishes after an outage, the failure Kratos users report
(go-kratos/kratos#2200-style reports of lost registrations after etcd restarts).

Discovery lists the prefix, then watches it from the next revision; when the watch stream
breaks it lists again and watches anew (resync), so changes made while it was cut off are
seen. A watch can also die without a word (aetcd ends its event stream without an error
when the server ends the gRPC stream without one) or outlive the data it followed (etcd restored
or restarted empty: revisions start again below the one watched from, so the new keys would
never reach it). So after ``resync_interval`` seconds without an event the watch is checked
against a fresh list, and resynced when the list differs or its revision went back.

Client: `aetcd <https://github.com/martyanov/aetcd>`_ (asyncio, grpcio-based, releases
tracking current grpcio/protobuf). Needs the ``etcd`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import Any

from framework.checks import MAX_SECONDS, check_counts, check_seconds
from framework.registry.instance import ServiceInstance
from framework.registry.watch import ListWatcher, watcher_fed_by

try:
    import aetcd
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("framework.registry.etcd needs aetcd: pip install 'pykratos[etcd]'") from exc

__all__ = ["MAX_LEASE_TTL", "EtcdRegistry"]

#: The longest lease ``ttl``, seconds: the framework's :data:`~framework.checks.MAX_SECONDS`
#: (about 31 years), below etcd's own cap (``MaxLeaseTTL``, 9e9 s, beyond which a grant fails
#: with "too large lease TTL" only once the registry runs).
MAX_LEASE_TTL = MAX_SECONDS

_log = logging.getLogger("pykratos.registry.etcd")

# gRPC reconnects with an exponential backoff of up to 120 s by default: after an etcd
# outage the registry would wait that long to notice etcd is back. Cap it at one second.
_CHANNEL_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
}


class EtcdRegistry:
    """Registrar and Discovery on etcd v3.

    Args:
        address: ``host:port`` of an etcd member's client URL.
        namespace: key prefix (Kratos' default ``/microservices``).
        ttl: lease time to live, whole seconds from 1 to :data:`MAX_LEASE_TTL`: how long a
            crashed instance stays listed.
        timeout: seconds for each etcd request.
        retry_interval: seconds between attempts while etcd is unreachable.
        resync_interval: seconds a watch may go without an event before it is checked
            against a fresh list (one range request per watched service; see the module).

    Raises:
        ValueError: a bad address, ``ttl`` not an int in 1 .. :data:`MAX_LEASE_TTL`, or a
            number of seconds that is not finite, not positive or above
            :data:`~framework.checks.MAX_SECONDS`.
    """

    def __init__(
        self,
        address: str = "127.0.0.1:2379",
        *,
        namespace: str = "/microservices",
        ttl: int = 15,
        timeout: float = 3.0,
        retry_interval: float = 0.5,
        resync_interval: float = 10.0,
    ) -> None:
        check_counts("EtcdRegistry", maximum=MAX_LEASE_TTL, ttl=ttl)
        check_seconds(
            "EtcdRegistry",
            timeout=timeout,
            retry_interval=retry_interval,
            resync_interval=resync_interval,
        )
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"etcd address must be host:port, got {address!r}")
        self.address = address
        self.namespace = namespace.rstrip("/")
        self.ttl = ttl
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.resync_interval = resync_interval
        self._host, self._port = host.strip("[]"), int(port)
        self._client = self._new_client()
        self._keepalives: dict[str, asyncio.Task[None]] = {}
        self._leases: dict[str, int] = {}
        self._watches: set[asyncio.Task[None]] = set()

    def _new_client(self) -> Any:
        return aetcd.Client(
            host=self._host, port=self._port, timeout=self.timeout, options=_CHANNEL_OPTIONS
        )

    def key(self, instance: ServiceInstance) -> str:
        """The etcd key of ``instance``."""
        return f"{self.namespace}/{instance.name}/{instance.id}"

    # -- Registrar -------------------------------------------------------------------------

    async def register(self, instance: ServiceInstance) -> None:
        """Put ``instance`` under a new lease and keep it alive until :meth:`deregister`.

        Raises the client's error if etcd cannot be reached now (the App then fails to start);
        later outages are retried in the background.
        """
        key = self.key(instance)
        await self._put_with_lease(key, instance.to_json())
        previous = self._keepalives.pop(key, None)
        if previous is not None:
            previous.cancel()
        self._keepalives[key] = asyncio.create_task(
            self._keep_alive(key, instance.to_json()), name=f"etcd keep-alive {key}"
        )

    async def deregister(self, instance: ServiceInstance) -> None:
        """Stop the keep-alive, delete the key and revoke its lease (best effort)."""
        key = self.key(instance)
        task = self._keepalives.pop(key, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        lease = self._leases.pop(key, None)
        try:
            await asyncio.wait_for(self._client.delete(key.encode()), self.timeout)
            if lease is not None:
                await asyncio.wait_for(self._client.revoke_lease(lease), self.timeout)
        except Exception as exc:
            # The lease expires anyway within ttl: the instance disappears, only later.
            _log.warning("could not deregister %s from etcd now (%r); its lease expires", key, exc)

    async def _put_with_lease(self, key: str, value: bytes) -> None:
        lease = await asyncio.wait_for(self._client.lease(self.ttl), self.timeout)
        await asyncio.wait_for(self._client.put(key.encode(), value, lease=lease), self.timeout)
        self._leases[key] = lease.id

    async def _keep_alive(self, key: str, value: bytes) -> None:
        """Refresh the lease every ttl/3 s; on any failure, put the key again (new lease)."""
        healthy = True
        while True:
            await asyncio.sleep(self.ttl / 3 if healthy else self.retry_interval)
            try:
                if healthy:
                    reply = await asyncio.wait_for(
                        self._client.refresh_lease(self._leases[key]), self.timeout
                    )
                    if reply is not None and reply.TTL > 0:
                        continue
                    _log.warning("etcd lease of %s is gone; registering it again", key)
                await self._put_with_lease(key, value)
                if not healthy:
                    _log.info("registered %s in etcd again", key)
                healthy = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if healthy:
                    _log.warning("etcd keep-alive of %s failed (%r); retrying", key, exc)
                healthy = False

    # -- Discovery -------------------------------------------------------------------------

    async def get_service(self, name: str) -> list[ServiceInstance]:
        """The instances registered under ``name``."""
        instances, _ = await self._list(self._prefix(name))
        return list(instances.values())

    async def watch(self, name: str) -> ListWatcher:
        """A watcher on ``name``; it lists, watches, and lists again after a broken stream."""
        watcher, task = watcher_fed_by(partial(self._watch, self._prefix(name)))
        self._watches.add(task)
        task.add_done_callback(self._watches.discard)
        return watcher

    async def close(self) -> None:
        """Stop keep-alives and watches (without deregistering) and close the client."""
        tasks = [*self._keepalives.values(), *self._watches]
        self._keepalives.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.close()

    def _prefix(self, name: str) -> str:
        return f"{self.namespace}/{name}/"

    async def _list(self, prefix: str) -> tuple[dict[bytes, ServiceInstance], int]:
        result = await asyncio.wait_for(self._client.get_prefix(prefix.encode()), self.timeout)
        instances: dict[bytes, ServiceInstance] = {}
        for kv in result:
            instance = _parse(kv.key, kv.value)
            if instance is not None:
                instances[kv.key] = instance
        return instances, int(result.header.revision)

    async def _watch(self, prefix: str, watcher: ListWatcher) -> None:
        # A client of its own for the stream, replaced when a watch cannot be created: after
        # an outage aetcd's shared watch machinery can stay wedged (a watch request queued
        # on a stream that is gone never gets its answer).
        client = self._new_client()
        failing = False
        try:
            while True:
                try:
                    current, revision = await self._list(prefix)
                    watcher.update(list(current.values()))
                    try:
                        stream: Any = await asyncio.wait_for(
                            client.watch_prefix(prefix.encode(), start_revision=revision + 1),
                            self.timeout,
                        )
                    except Exception:
                        with contextlib.suppress(Exception):
                            await client.close()
                        client = self._new_client()
                        raise
                    if failing:
                        _log.info("etcd watch of %s resumed", prefix)
                        failing = False
                    try:
                        await self._follow(prefix, stream, current, revision, watcher)
                    finally:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(stream.cancel(), self.timeout)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not failing:
                        _log.warning("etcd watch of %s broke (%r); resyncing", prefix, exc)
                    failing = True
                await asyncio.sleep(self.retry_interval)
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    async def _follow(
        self,
        prefix: str,
        stream: Any,
        current: dict[bytes, ServiceInstance],
        revision: int,
        watcher: ListWatcher,
    ) -> None:
        """Apply ``stream``'s events to ``current`` until the stream ends or, checked after
        each quiet ``resync_interval``, no longer matches etcd (then the caller resyncs)."""
        events = aiter(stream)
        seen = revision  # the newest revision applied
        # One pending read, kept across the quiet checks: cancelling it would end the stream.
        pending: asyncio.Future[Any] = asyncio.ensure_future(anext(events))
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=self.resync_interval)
                if not done:
                    listed, now = await self._list(prefix)
                    if now < seen or listed != current:
                        _log.warning(
                            "etcd watch of %s went stale (revision %d, listed at %d); resyncing",
                            prefix,
                            seen,
                            now,
                        )
                        return
                    continue
                try:
                    event = pending.result()
                except StopAsyncIteration:
                    return  # ended: list and watch anew
                if event.kind == "PUT":
                    instance = _parse(event.kv.key, event.kv.value)
                    if instance is not None:
                        current[event.kv.key] = instance
                else:
                    current.pop(event.kv.key, None)
                seen = max(seen, int(event.kv.mod_revision))
                watcher.update(list(current.values()))
                pending = asyncio.ensure_future(anext(events))
        finally:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)


def _parse(key: bytes, value: bytes) -> ServiceInstance | None:
    try:
        return ServiceInstance.from_json(value)
    except ValueError:
        _log.warning("ignoring malformed registry entry %r", key)
        return None
