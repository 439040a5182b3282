"""SIGTERM on a real process: in-flight HTTP and gRPC calls finish, exit status 0; a second
signal forces the stop and exits 128 + its number."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest

from app_template.api.order.v1 import order_pb2, order_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


async def test_sigterm_drains_in_flight_http_and_grpc_calls_then_exits_zero() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.framework.slow_service", "1.0",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        assert line[0] == "READY", line
        http_endpoint, grpc_target = line[1], line[2]

        async with httpx.AsyncClient(base_url=http_endpoint, timeout=10) as client, \
                grpc.aio.insecure_channel(grpc_target) as channel:
            stub = order_pb2_grpc.OrderServiceStub(channel)
            assert (await client.get("/readyz")).status_code == 200
            http_call = asyncio.create_task(client.get("/slow"))
            grpc_call = asyncio.ensure_future(stub.GetOrder(order_pb2.GetOrderRequest(id="x")))
            await asyncio.sleep(0.3)  # both calls are now in flight
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            http_reply, grpc_reply = await asyncio.gather(http_call, grpc_call)
        assert http_reply.status_code == 200 and http_reply.json() == {"status": "done"}
        assert grpc_reply.status == "SLOW"
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert time.monotonic() - signalled < 5 + 1  # within the stop timeout
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_a_second_signal_cancels_the_drain_and_exits_128_plus_the_signal(
    sig: signal.Signals, status: int
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.framework.slow_service", "60",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        assert line[0] == "READY", line
        async with httpx.AsyncClient(base_url=line[1], timeout=30) as client:
            in_flight = asyncio.create_task(client.get("/slow"))  # would take 60 s
            await asyncio.sleep(0.3)
            proc.send_signal(sig)
            await asyncio.sleep(0.3)
            signalled = time.monotonic()
            proc.send_signal(sig)
            # A forced stop is not a clean one: 128 + the signal number, as a shell reports it.
            assert await asyncio.wait_for(proc.wait(), 10) == status
            # Well before the 5 s stop timeout: the second signal did not wait for the drain.
            assert time.monotonic() - signalled < 3
            reply = await asyncio.gather(in_flight, return_exceptions=True)
        assert not (isinstance(reply[0], httpx.Response) and reply[0].status_code == 200)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
