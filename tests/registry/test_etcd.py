"""EtcdRegistry against a real etcd: lease, watch, outage with re-registration and resync."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aetcd
import pytest
from aetcd.exceptions import ConnectionFailedError

from framework.registry import ServiceInstance, Watcher
from framework.registry.etcd import EtcdRegistry
from tests.registry.etcd_server import EtcdServer


def _instance(i: int) -> ServiceInstance:
    return ServiceInstance(f"id-{i}", "orders", "v1", {"n": str(i)}, (f"grpc://10.0.0.{i}:9000",))


async def _until(watcher: Watcher, ids: set[str], timeout: float) -> float:
    """Wait for the watcher to show exactly ``ids``; return how long it took."""
    started = time.monotonic()

    async def loop() -> None:
        while {i.id for i in await watcher.next()} != ids:
            pass

    await asyncio.wait_for(loop(), timeout)
    return time.monotonic() - started


async def test_register_watch_deregister(etcd: EtcdServer) -> None:
    registry = EtcdRegistry(etcd.address, namespace="/pykratos-test", ttl=3)
    try:
        watcher = await registry.watch("orders")
        assert await watcher.next() == []
        await registry.register(_instance(1))
        await registry.register(_instance(2))
        await _until(watcher, {"id-1", "id-2"}, 5)
        assert {i.id for i in await registry.get_service("orders")} == {"id-1", "id-2"}
        [one] = [i for i in await registry.get_service("orders") if i.id == "id-1"]
        assert one == _instance(1)
        await registry.deregister(_instance(1))
        await _until(watcher, {"id-2"}, 5)
        await watcher.stop()
    finally:
        await registry.close()


async def test_keep_alive_holds_the_instance_past_its_ttl(etcd: EtcdServer) -> None:
    registry = EtcdRegistry(etcd.address, namespace="/pykratos-test", ttl=1)
    other = EtcdRegistry(etcd.address, namespace="/pykratos-test", ttl=1)
    try:
        await registry.register(_instance(1))
        await asyncio.sleep(3)  # three TTLs: only the keep-alive can keep the key
        assert [i.id for i in await other.get_service("orders")] == ["id-1"]
        # A registry that stops refreshing (a crash) loses the key within the TTL.
        await registry.close()
        watcher = await other.watch("orders")
        assert await _until(watcher, set(), 3) < 3
        await watcher.stop()
    finally:
        await other.close()


@pytest.mark.parametrize("wipe", [True, False], ids=["etcd-back-empty", "etcd-back-same-data"])
async def test_instances_come_back_after_an_etcd_restart(etcd: EtcdServer, wipe: bool) -> None:
    ttl = 3
    registries = [EtcdRegistry(etcd.address, namespace="/pykratos-test", ttl=ttl) for _ in range(3)]
    # A short resync: an empty restart may leave the watch following revisions the new store
    # has not reached (caught by the quiet check, not by a stream error).
    observer = EtcdRegistry(etcd.address, namespace="/pykratos-test", ttl=ttl, resync_interval=1)
    try:
        for n, registry in enumerate(registries):
            await registry.register(_instance(n))
        watcher = await observer.watch("orders")
        everyone = {"id-0", "id-1", "id-2"}
        await _until(watcher, everyone, 5)
        etcd.stop(wipe=wipe)
        await asyncio.sleep(1.5)  # keep-alives and the watch fail meanwhile
        restarted = time.monotonic()
        etcd.start()
        if wipe:
            # The data is gone: whatever is listed now was registered again. (Whether the
            # watcher shows the empty store in between depends on who reaches etcd first.)
            while True:
                with contextlib.suppress(ConnectionFailedError):  # our own client, just after
                    if {i.id for i in await observer.get_service("orders")} == everyone:
                        break
                assert time.monotonic() - restarted < ttl + 2, "not registered again in time"
                await asyncio.sleep(0.05)
            assert time.monotonic() - restarted < ttl + 1, "not registered again within a TTL"
            await _until(watcher, everyone, ttl + 2)
        else:
            # etcd restores the keys and grants their leases a fresh TTL: they stay only if
            # the keep-alives resumed.
            await asyncio.sleep(2 * ttl)
        assert {i.id for i in await observer.get_service("orders")} == everyone
        await watcher.stop()
    finally:
        for registry in [*registries, observer]:
            await registry.close()


class _SilentStream:
    """A watch stream that died without a word: it never yields and never fails."""

    def __init__(self) -> None:
        self.cancelled = False

    def __aiter__(self) -> _SilentStream:
        return self

    async def __anext__(self) -> object:
        await asyncio.Event().wait()
        raise StopAsyncIteration

    async def cancel(self) -> None:
        self.cancelled = True


async def test_a_watch_that_died_silently_is_resynced(
    etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    observer = EtcdRegistry(etcd.address, namespace="/pykratos-test", ttl=3, resync_interval=0.5)
    registry = EtcdRegistry(etcd.address, namespace="/pykratos-test", ttl=3)
    real_watch = aetcd.Client.watch_prefix
    silent: list[_SilentStream] = []

    async def first_watch_is_silent(self: object, *args: object, **kwargs: object) -> object:
        if not silent:
            silent.append(_SilentStream())
            return silent[0]
        return await real_watch(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aetcd.Client, "watch_prefix", first_watch_is_silent)
    try:
        watcher = await observer.watch("orders")
        assert await watcher.next() == []
        await registry.register(_instance(1))
        # No event can come through the dead stream: only the quiet check finds the change.
        assert await _until(watcher, {"id-1"}, 5) < 3
        assert silent[0].cancelled  # the dead watch was released
        await registry.deregister(_instance(1))
        await _until(watcher, set(), 5)  # and the new watch delivers events
        await watcher.stop()
    finally:
        await registry.close()
        await observer.close()


def test_bad_settings_are_refused_by_name() -> None:
    for bad in ({"ttl": 0}, {"timeout": float("nan")}, {"resync_interval": 0},
                {"retry_interval": float("inf")}):  # fmt: skip
        [name] = bad
        with pytest.raises(ValueError, match=name):
            EtcdRegistry("127.0.0.1:2379", **bad)  # type: ignore[arg-type]


async def test_a_watch_that_cannot_be_created_is_retried_on_a_fresh_client(
    etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an outage aetcd's watch machinery can stay wedged: creating a watch never
    returns. The creation is bounded by ``timeout`` and retried on a new client."""
    observer = EtcdRegistry(etcd.address, namespace="/pykratos-test", ttl=3, timeout=0.5)
    registry = EtcdRegistry(etcd.address, namespace="/pykratos-test", ttl=3)
    real_watch = aetcd.Client.watch_prefix
    wedged: list[object] = []

    async def first_client_is_wedged(self: object, *args: object, **kwargs: object) -> object:
        if not wedged or wedged[0] is self:
            wedged[:1] = [self]
            await asyncio.Event().wait()
        return await real_watch(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aetcd.Client, "watch_prefix", first_client_is_wedged)
    try:
        watcher = await observer.watch("orders")
        assert await watcher.next() == []
        await registry.register(_instance(1))
        await _until(watcher, {"id-1"}, 5)
        await registry.deregister(_instance(1))
        await _until(watcher, set(), 5)  # events flow on the new client's watch
        await watcher.stop()
    finally:
        await registry.close()
        await observer.close()
