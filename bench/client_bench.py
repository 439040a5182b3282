"""gRPC client throughput: the discovery client + middleware vs a bare grpc.aio channel.

Run from the repo root::

    python -m bench.client_bench [--calls 20000] [--concurrency 32] [--rounds 3]

One bare ``grpc.aio`` echo server (bytes in, same bytes out: no proto work) runs in its own
process. In this process, ``--concurrency`` callers make ``--calls`` unary calls through

- **bare**: ``grpc.aio.insecure_channel(address).unary_unary(method)``;
- **pykratos**: ``GrpcClientChannel("discovery:///bench")`` resolved through a registry
  (:class:`~framework.registry.StaticDiscovery`), p2c balancer, and
  ``default_client_middlewares(timeout=5)`` (metadata, deadline, SRE breaker, retry);

alternating rounds (bare, pykratos, bare, ...) so machine noise hits both. Printed: the best
and every round's calls/s per client and the ratio of the bests (target >= 0.9x). The server
is the same for both, so the difference is the client's cost per call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

__all__ = ["main"]

METHOD = "/bench.Echo/Call"
TARGET_RATIO = 0.9
PAYLOAD = b"x" * 64


def _serve(port: int) -> None:
    import grpc

    async def run() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "bench.Echo",
            {"Call": grpc.unary_unary_rpc_method_handler(_echo)},
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    asyncio.run(run())


async def _echo(request: bytes, context: object) -> bytes:
    return request


async def _drive(call: Callable[[bytes], Awaitable[bytes]], calls: int, concurrency: int) -> float:
    remaining = calls

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            assert await call(PAYLOAD) == PAYLOAD

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return calls / (time.perf_counter() - started)


async def _bench(
    address: str, calls: int, concurrency: int, rounds: int
) -> tuple[list[float], list[float]]:
    import grpc

    from framework.client import default_client_middlewares
    from framework.client.grpc import GrpcClientChannel
    from framework.registry import ServiceInstance, StaticDiscovery

    bare_channel = grpc.aio.insecure_channel(address)
    bare = bare_channel.unary_unary(METHOD)
    registry = StaticDiscovery(
        {"bench": [ServiceInstance("b1", "bench", endpoints=(f"grpc://{address}",))]}
    )
    ours_channel = GrpcClientChannel(
        "discovery:///bench", discovery=registry, middlewares=default_client_middlewares(5.0)
    )
    await ours_channel.start()
    ours = ours_channel.unary_unary(METHOD)
    await _drive(bare, 500, concurrency)  # warm up both connections
    await _drive(ours, 500, concurrency)
    bare_rates: list[float] = []
    our_rates: list[float] = []
    for _ in range(rounds):
        bare_rates.append(await _drive(bare, calls, concurrency))
        our_rates.append(await _drive(ours, calls, concurrency))
    await bare_channel.close()
    await ours_channel.close()
    return bare_rates, our_rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.client_bench", description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve)
        return 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.client_bench", "--serve", str(port)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            print("the echo server did not start", file=sys.stderr)
            return 1
        bare, ours = asyncio.run(
            _bench(f"127.0.0.1:{port}", args.calls, args.concurrency, args.rounds)
        )
    finally:
        server.terminate()
        server.wait(10)
    ratio = max(ours) / max(bare)
    print(f"gRPC unary calls, {args.calls} per round, {args.concurrency} concurrent callers")
    print(f"{'client':<34}{'best calls/s':>14}  rounds")
    print(
        f"{'bare grpc.aio channel':<34}{max(bare):>14,.0f}  {', '.join(f'{r:,.0f}' for r in bare)}"
    )
    print(
        f"{'pykratos discovery + middleware':<34}{max(ours):>14,.0f}  "
        f"{', '.join(f'{r:,.0f}' for r in ours)}"
    )
    verdict = "meets" if ratio >= TARGET_RATIO else "below"
    print(f"ratio {ratio:.2f}x ({verdict} the {TARGET_RATIO}x target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
