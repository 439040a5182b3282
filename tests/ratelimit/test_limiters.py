"""TokenBucket and BBR decisions, on a fake clock and a fake CPU."""

from __future__ import annotations

import pytest

from framework.middleware.ratelimit import BBR, CpuUsage, MaxInFlight, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_admits_the_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(4, burst=3, clock=clock)  # binary-exact steps of 1/8 s
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.125  # half a token
    assert not bucket.allow()
    clock.now += 0.125
    assert bucket.allow()
    assert not bucket.allow()
    clock.now += 60  # refills up to the burst, no further
    assert sum(bucket.allow() for _ in range(10)) == 3


def test_token_bucket_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(5, burst=0)
    assert TokenBucket(2.5).burst == 3


def test_cpu_usage_is_smoothed_process_time() -> None:
    clock, cpu_seconds = Clock(), [0.0]
    usage = CpuUsage(interval=0.25, decay=0.5, cpu_seconds=lambda: cpu_seconds[0], clock=clock)
    clock.now += 0.1
    cpu_seconds[0] += 0.1
    assert usage.read() == 0.0  # not sampled yet
    clock.now += 0.15
    cpu_seconds[0] += 0.15  # a full core for 0.25 s
    assert usage.read() == pytest.approx(500.0)
    clock.now += 0.25
    cpu_seconds[0] += 0.125  # half a core
    assert usage.read() == pytest.approx(500.0 * 0.5 + 500.0 * 0.5)


def _learn(limiter: BBR, clock: Clock, per_bucket: int, rt: float, buckets: int) -> None:
    """``per_bucket`` calls of ``rt`` seconds completed in each of ``buckets`` buckets."""
    for _ in range(buckets):
        dones = [limiter.allow() for _ in range(per_bucket)]
        clock.now += rt
        for done in dones:
            assert done is not None
            done()
        clock.now += 0.1 - rt


def test_bbr_sheds_beyond_the_learned_concurrency_only_while_cpu_is_high() -> None:
    clock, cpu = Clock(), [100.0]
    limiter = BBR(window=1.0, buckets=10, cpu=lambda: cpu[0], clock=clock)
    # 20 calls per 100 ms bucket taking 50 ms each: 200/s * 0.05 s = 10 in flight at best.
    _learn(limiter, clock, per_bucket=20, rt=0.05, buckets=5)
    assert limiter.max_in_flight() == 10

    held = [limiter.allow() for _ in range(30)]
    assert all(held)  # CPU low: no shedding, whatever the concurrency
    cpu[0] = 900.0
    assert limiter.allow() is None  # 30 in flight > 10
    for done in held[:25]:
        assert done is not None
        done()
    admitted = limiter.allow()  # 5 in flight < 10
    assert admitted is not None
    admitted()

    # Cool-off: shedding started, CPU dips, in-flight over the limit -> still shed for 1 s.
    more = [limiter.allow() for _ in range(6)]
    assert all(more)
    assert limiter.allow() is None
    cpu[0] = 100.0
    clock.now += 0.5
    assert limiter.allow() is None
    clock.now += 0.6
    late = limiter.allow()
    assert late is not None  # cool-off over


def test_bbr_never_sheds_a_lone_call() -> None:
    limiter = BBR(cpu=lambda: 1000.0, clock=Clock())
    first = limiter.allow()
    assert first is not None  # no history: max_in_flight 0, but one call always passes
    assert limiter.allow() is not None  # in flight 1 is not > 1
    assert limiter.allow() is None


def _block_the_loop(seconds: float) -> None:
    import time

    time.sleep(seconds)  # what a handler doing CPU work without awaiting does


async def test_loop_lag_reads_a_blocked_loop() -> None:
    import asyncio

    from framework.middleware.ratelimit import LoopLag

    lag = LoopLag(interval=0.01, saturated=0.05, decay=0.0)
    assert lag.read() == 0.0  # starts the probe on this loop
    _block_the_loop(0.2)  # the probe due in 10 ms runs ~190 ms late
    await asyncio.sleep(0.005)
    assert lag.read() == 1000.0
    for _ in range(5):  # an idle loop: probes on time again (within 50 ms on a busy host)
        await asyncio.sleep(0.011)
    assert lag.read() < 1000.0


def test_max_in_flight_admits_up_to_the_limit_and_frees_on_done() -> None:
    limiter = MaxInFlight(2)
    first, second = limiter.allow(), limiter.allow()
    assert first and second
    assert limiter.allow() is None  # a third call while two run
    first()
    third = limiter.allow()
    assert third
    assert limiter.allow() is None
    second()
    third()
    assert limiter.in_flight == 0


def test_max_in_flight_rejects_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="limit must be >= 1"):
        MaxInFlight(0)
