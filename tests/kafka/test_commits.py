"""Offset commits on a real broker: at-least-once, never past an unfinished message.

Each test consumes in two runs of the same group (stop, then restart) and checks what the
second run gets again: that is exactly what the first run committed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest
from pydantic import BaseModel

from framework.broker import BrokerServer, Router
from framework.transport.kafka import KafkaBroker
from framework.transport.kafka.tansu import FAST_JOIN
from tests.kafka.conftest import Waiter, create_topic

pytestmark = pytest.mark.kafka


class Job(BaseModel):
    id: int


async def publish_jobs(broker: KafkaBroker, topic: str, count: int) -> None:
    async with broker.batch_publisher(chunk_size=200) as publisher:
        futures = [
            await publisher.submit(topic, Job(id=i).model_dump_json().encode(), key=b"k%d" % i)
            for i in range(count)
        ]
        await asyncio.gather(*futures)


def consumer(
    bootstrap: str,
    topic: str,
    group: str,
    handler: Callable[[Job], Awaitable[None]],
    concurrency: int = 4,
) -> BrokerServer:
    router = Router()
    router.subscriber(topic, group=group, concurrency=concurrency, ordering="key")(handler)
    return BrokerServer(KafkaBroker(bootstrap, **FAST_JOIN), [router])


async def test_commit_never_passes_an_unfinished_message(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic, group = unique("stuck"), unique("g")
    await create_topic(bootstrap, topic, 1)
    await publish_jobs(broker, topic, 30)

    finished: set[int] = set()
    ready = asyncio.Event()  # 0..4 finished, 5 stuck, something after 5 finished

    async def first_run(job: Job) -> None:
        if job.id == 5:
            await asyncio.Event().wait()  # never finishes: cancelled by the stop below
        finished.add(job.id)
        if finished >= {0, 1, 2, 3, 4} and max(finished) > 5:
            ready.set()

    server = consumer(bootstrap, topic, group, first_run)
    await server.start()
    try:
        async with asyncio.timeout(15):
            await ready.wait()
    finally:
        await server.stop(0.2)  # 5 is still running: it must not be committed
    assert 5 not in finished and any(i > 5 for i in finished)  # completions out of order

    again: set[int] = set()
    everything = Waiter()

    async def second_run(job: Job) -> None:
        again.add(job.id)
        everything.add()

    server = consumer(bootstrap, topic, group, second_run)
    await server.start()
    try:
        await everything.wait_for(25)
    finally:
        await server.stop(5)
    # The commit stopped exactly at 5: it comes back, with everything after it, and
    # nothing before it.
    assert again == set(range(5, 30))


async def test_stop_without_draining_loses_nothing(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic, group = unique("crash"), unique("g")
    await create_topic(bootstrap, topic, 2)
    count = 600
    await publish_jobs(broker, topic, count)
    rng = random.Random(3)
    first: list[int] = []
    progress = Waiter()

    async def slow(job: Job) -> None:
        await asyncio.sleep(rng.random() / 1000)
        first.append(job.id)
        progress.add()

    server = consumer(bootstrap, topic, group, slow)
    await server.start()
    try:
        await progress.wait_for(200)
    finally:
        await server.stop(0)  # no drain: whatever is in flight is cancelled
    assert len(first) < count

    second: set[int] = set()
    missing = set(range(count)) - set(first)
    all_back = asyncio.Event()

    async def rest(job: Job) -> None:
        second.add(job.id)
        if missing <= second:
            all_back.set()

    server = consumer(bootstrap, topic, group, rest)
    await server.start()
    try:
        async with asyncio.timeout(15):
            await all_back.wait()
    finally:
        await server.stop(5)
    assert set(first) | second == set(range(count))  # every message handled at least once
    assert len(second) < count  # and the first run's commits counted


async def test_graceful_stop_commits_everything_that_finished(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic, group = unique("graceful"), unique("g")
    await create_topic(bootstrap, topic, 2)
    count = 300
    await publish_jobs(broker, topic, count)
    first: list[int] = []
    progress = Waiter()

    async def busy(job: Job) -> None:
        await asyncio.sleep(0.002)  # stop lands while handlers are running
        first.append(job.id)
        progress.add()

    server = consumer(bootstrap, topic, group, busy)
    await server.start()
    try:
        await progress.wait_for(100)
    finally:
        await server.stop(5)  # in-flight handlers finish, then the final commit
    assert len(first) < count

    second: list[int] = []
    missing = set(range(count)) - set(first)
    all_back = asyncio.Event()

    async def rest(job: Job) -> None:
        second.append(job.id)
        if missing <= set(second):
            all_back.set()

    server = consumer(bootstrap, topic, group, rest)
    await server.start()
    try:
        async with asyncio.timeout(15):
            await all_back.wait()
    finally:
        await server.stop(5)
    assert not set(first) & set(second)  # nothing that finished came back
    assert sorted(first + second) == list(range(count))  # and nothing twice
