"""The reference service's get-order, through the framework vs bare FastAPI and bare grpc.aio.

HTTP: ``GET /v1/orders/{id}`` of the fully wired reference service (HTTP, gRPC, WebSocket and
broker servers running, default middleware) against a bare FastAPI app doing the same work
(``OrderUseCase.get`` on the same repository, the same pydantic response model), both on
uvicorn with httptools and uvloop, each in its own process, loaded in turns by ``wrk``
(Debian package). Two repositories: ``sql`` (the real SQLite repository: the end-to-end
figure) and ``memory`` (a dict: exposes the framework's own overhead).

gRPC: ``OrderService/GetOrder`` of the same reference service against a bare ``grpc.aio``
server running the same servicer class (``OrderGrpcService``) with no framework around it,
loaded in turns by a grpc.aio client in its own process.

Each row gives req/s (best of the rounds) and the server's CPU time per request (user+system
from /proc, lowest of the rounds): on a noisy machine req/s swings, CPU per request much less.

A second table measures what metrics cost (on by default in the reference service): the same
fully wired service with ``metrics.enabled`` true and false, memory repository, interleaved in
the same run (target: metrics on >= 0.95x metrics off). ``--no-metrics-table`` skips it.

On a shared machine req/s and even CPU time per request move with the neighbours' load
(cache and frequency effects): a 1-2 % cost drowns in it. ``--instructions`` measures the
same pair load-independently: each server runs under ``valgrind --tool=callgrind`` with
collection switched on only around ``--calls`` sequential requests (after a warm-up), and the
table gives instructions per request. Work that runs by the clock rather than per request
would otherwise count in proportion to how slowly the run went: the outbox relay's polling
is switched off in this mode (get-order publishes nothing), and what the server executes
idle (uvicorn's tick, grpc's poller, ~0.2 M instructions/s) is measured for 5 s first and
taken off pro rata.

    python -m bench.service_bench [--seconds 5] [--connections 32] [--calls 20000] [--rounds 2]
    python -m bench.service_bench --instructions [--calls 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._util import free_port, print_table, serve_in_subprocess

from app_template.service.order_http import OrderView

ORDER_ID = "0" * 31 + "1"


class MemoryOrderRepo:
    """A dict-backed OrderRepo with one seeded order."""

    def __init__(self) -> None:
        from app_template.biz.order import Order

        self.orders = {ORDER_ID: Order(id=ORDER_ID, customer_id="c1", amount_cents=1250)}

    async def save(self, order: object) -> None:
        raise NotImplementedError

    async def get(self, order_id: str) -> object:
        return self.orders.get(order_id)

    async def list(self, limit: int) -> list[Any]:
        return list(self.orders.values())[:limit]

    async def set_status(
        self, order_id: str, status: object, *, expected: object = None
    ) -> object:
        raise NotImplementedError


async def _seed(db_url: str) -> None:
    from app_template.biz.order import Order
    from app_template.data import Database, SqlOrderRepo

    database = Database(db_url)
    await database.start()
    await SqlOrderRepo(database).save(Order(id=ORDER_ID, customer_id="c1", amount_cents=1250))
    await database.close()


def _usecase(repo: str, db_url: str) -> Any:
    from app_template.biz.order import OrderUseCase
    from app_template.data import Database, SqlOrderRepo

    store = MemoryOrderRepo() if repo == "memory" else SqlOrderRepo(Database(db_url))
    # get() publishes nothing and opens no unit of work
    return OrderUseCase(store, events=None, transactions=None)  # type: ignore[arg-type]


def serve_framework(
    port: int, grpc_port: int, repo: str, db_url: str, metrics: bool = True,
    outbox: bool = True,
) -> None:
    """The reference service, fully wired (HTTP, gRPC, WebSocket, broker); ``outbox=False``
    stops the outbox relay's polling (get-order publishes nothing either way)."""
    import logging

    from dependency_injector import providers

    from app_template.conf.conf import Bootstrap
    from app_template.container import Container
    from app_template.wire import wire_app

    bootstrap = Bootstrap.model_validate(
        {
            "server": {"http": {"host": "127.0.0.1", "port": port},
                       "grpc": {"host": "127.0.0.1", "port": grpc_port},
                       "websocket": {"host": "127.0.0.1", "port": 0}},
            "data": {"database": {"url": db_url}, "outbox": {"enabled": outbox}},
            "log": {"level": "WARNING"},
            "metrics": {"enabled": metrics},
        }
    )
    logging.basicConfig(level=logging.WARNING)
    container = Container()
    if repo == "memory":
        container.order_repo.override(providers.Singleton(MemoryOrderRepo))
    raise SystemExit(wire_app(bootstrap, container).main())  # a failed start exits non-zero


def serve_bare_http(port: int, repo: str, db_url: str) -> None:
    """Bare FastAPI + uvicorn doing the same work, no framework."""
    import uvicorn
    import uvloop
    from fastapi import FastAPI

    usecase = _usecase(repo, db_url)
    app = FastAPI()

    @app.get("/v1/orders/{order_id}")
    async def get_order(order_id: str) -> OrderView:
        return OrderView.of(await usecase.get(order_id))

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="off", http="httptools", loop="none")
    uvloop.run(uvicorn.Server(config).serve())


def serve_bare_grpc(port: int, repo: str, db_url: str) -> None:
    """Bare grpc.aio running the reference service's own servicer, no framework."""
    import grpc
    import uvloop

    from app_template.api.order.v1 import order_pb2_grpc
    from app_template.service.order_grpc import OrderGrpcService

    async def serve() -> None:
        server = grpc.aio.server()
        order_pb2_grpc.add_OrderServiceServicer_to_server(
            OrderGrpcService(_usecase(repo, db_url)), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(serve())


def grpc_client(target: str, calls: int, concurrency: int) -> None:
    """Make ``calls`` GetOrder calls from ``concurrency`` callers; print JSON figures."""
    import json
    import time

    import grpc
    import uvloop

    from app_template.api.order.v1 import order_pb2, order_pb2_grpc

    async def run() -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = order_pb2_grpc.OrderServiceStub(channel)
            request = order_pb2.GetOrderRequest(id=ORDER_ID)
            for _ in range(200):  # warm-up
                await stub.GetOrder(request)
            remaining = calls

            async def caller() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    await stub.GetOrder(request)

            started = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        print(json.dumps({"calls": calls, "warmup": 200, "seconds": elapsed}))

    uvloop.run(run())


def measure_grpc(port: int, calls: int, concurrency: int) -> tuple[float, int]:
    """Requests per second and the number of calls the server handled."""
    import json

    out = subprocess.run(
        [sys.executable, "-m", "bench.service_bench", "--grpc-client", f"127.0.0.1:{port}",
         "--calls", str(calls), "--concurrency", str(concurrency)],
        check=True, capture_output=True, text=True, timeout=600,
    ).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    return figures["calls"] / figures["seconds"], figures["calls"] + figures["warmup"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, seconds: int, connections: int) -> tuple[float, int]:
    """Requests per second and the number of requests served."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
        check=True, capture_output=True, text=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers from {url}:\n{out}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if rate is None or count is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    return float(rate.group(1)), int(count.group(1))


def measure(
    kind: str, transport: str, repo: str, db_url: str, args: argparse.Namespace
) -> tuple[float, float]:
    """Start one server process, load it; return (req/s, server CPU us per request)."""
    listen = free_port()
    if kind.startswith("framework"):  # one process serves both; only ``transport`` is loaded
        other = free_port()
        http_port, grpc_port = (listen, other) if transport == "http" else (other, listen)
        launch = ["--serve", "framework", "--port", str(http_port), "--grpc-port", str(grpc_port)]
        if kind == "framework-nometrics":
            launch.append("--no-metrics")
    else:
        launch = ["--serve", f"bare-{transport}", "--port", str(listen)]
    command = ["-m", "bench.service_bench", *launch, "--repo", repo, "--db", db_url]
    with serve_in_subprocess(command, listen) as proc:
        if transport == "http":
            url = f"http://127.0.0.1:{listen}/v1/orders/{ORDER_ID}"
            wrk(url, 1, args.connections)  # warm-up
            before = cpu_seconds(proc.pid)
            per_second, served = wrk(url, args.seconds, args.connections)
        else:
            before = cpu_seconds(proc.pid)
            per_second, served = measure_grpc(listen, args.calls, args.concurrency)
        used = cpu_seconds(proc.pid) - before
    return per_second, used / served * 1e6


def _sequential_http(port: int, calls: int) -> None:
    """``calls`` GET order requests one after the other on one keep-alive connection."""
    import socket

    request = f"GET /v1/orders/{ORDER_ID} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as stream:
        for _ in range(calls):
            sock.sendall(request)
            length = 0
            while (line := stream.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line[15:])
            stream.read(length)


def _sequential_grpc(port: int, calls: int) -> None:
    """``calls`` GetOrder calls one after the other."""
    import grpc

    from app_template.api.order.v1 import order_pb2, order_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = order_pb2_grpc.OrderServiceStub(channel)
        request = order_pb2.GetOrderRequest(id=ORDER_ID)
        for _ in range(calls):
            stub.GetOrder(request)


def instructions_per_request(
    transport: str, metrics: bool, calls: int, db_url: str, warmup: int = 300, idle: float = 5.0
) -> float:
    """Instructions the framework server executes per get-order (callgrind, all threads),
    less what it executes idle in the same time."""
    from bench._util import wait_for_port

    http_port, grpc_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as out:
        command = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out}/callgrind.%p", sys.executable, "-m",
            "bench.service_bench", "--serve", "framework", "--port", str(http_port),
            "--grpc-port", str(grpc_port), "--repo", "memory", "--db", db_url, "--no-outbox",
            *([] if metrics else ["--no-metrics"]),
        ]
        # A fixed hash seed: dict and set layouts (so probe counts) then repeat run to run.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env)
        try:
            wait_for_port(http_port, timeout=600)  # ~50x slower under valgrind
            wait_for_port(grpc_port, timeout=600)
            load = _sequential_http if transport == "http" else _sequential_grpc
            port = http_port if transport == "http" else grpc_port
            load(port, warmup)
            pid = str(proc.pid)
            # Timers (uvicorn's tick, the broker server's polls) and grpc's threads run
            # whatever the traffic: their rate, measured idle first, is taken off pro rata
            # to how long the loaded part lasted (which depends on the machine's load).
            subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
            time.sleep(idle)
            subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
            started = time.perf_counter()
            load(port, calls)
            loaded = time.perf_counter() - started
            subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
            dumps = {}
            for dump in Path(out).glob("callgrind.*.*"):  # .1: idle, .2: loaded
                found = re.search(r"^totals:\s+(\d+)", dump.read_text(), re.M)
                dumps[dump.suffix] = int(found.group(1)) if found else 0
        finally:
            proc.terminate()
            proc.wait(60)
    background = dumps.get(".1", 0) / idle * loaded
    total = dumps.get(".2", 0) - background
    if total <= 0:
        raise RuntimeError(f"callgrind recorded nothing usable ({dumps}): is callgrind_control "
                           "working?")
    return total / calls


def instructions_table(args: argparse.Namespace) -> None:
    """Metrics on vs off in instructions per request: the load-independent figure."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite+aiosqlite:///{Path(tmp) / 'orders.db'}"
        asyncio.run(_seed(db_url))
        for transport in args.transport or ("http", "grpc"):
            on = instructions_per_request(transport, True, args.calls, db_url)
            off = instructions_per_request(transport, False, args.calls, db_url)
            label = "HTTP GET order" if transport == "http" else "gRPC GetOrder"
            rows.append((f"{label} (memory repo)", f"{on:.0f}", f"{off:.0f}",
                         f"{on - off:.0f}", f"{off / on:.3f}x"))
    print_table(
        f"Metrics cost in instructions (callgrind, {args.calls} sequential requests after a "
        "warm-up; the ratio off/on is the req/s ratio a CPU-bound server would show; "
        "target >= 0.95x).",
        ["workload", "metrics on instr/req", "metrics off instr/req", "difference",
         "ratio (off/on)"],
        rows,
    )


def _row(label: str, rate: dict[str, float], cpu: dict[str, float]) -> tuple[str, ...]:
    return (
        label,
        f"{rate['framework']:.0f}", f"{rate['bare']:.0f}",
        f"{rate['framework'] / rate['bare']:.2f}x",
        f"{cpu['framework']:.0f}", f"{cpu['bare']:.0f}",
        f"{cpu['bare'] / cpu['framework']:.2f}x",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per measurement")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--calls", type=int,
                        help="gRPC calls per measurement (default 20000; with --instructions: "
                        "requests per server, default 1000)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent gRPC callers")
    parser.add_argument("--rounds", type=int, default=2,
                        help="measurements per server, interleaved; the best is kept")
    parser.add_argument("--transport", choices=["http", "grpc"], action="append",
                        help="measure only this transport (repeatable; default: both)")
    parser.add_argument("--no-metrics-table", action="store_true",
                        help="skip the metrics on/off comparison")
    parser.add_argument("--metrics-table-only", action="store_true",
                        help="only the metrics on/off comparison")
    parser.add_argument("--instructions", action="store_true",
                        help="metrics on vs off in instructions per request (valgrind)")
    parser.add_argument("--serve", choices=["framework", "bare-http", "bare-grpc"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--no-metrics", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-outbox", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--grpc-client", metavar="TARGET", help=argparse.SUPPRESS)
    parser.add_argument("--repo", choices=["sql", "memory"], default="memory",
                        help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--grpc-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.calls is None:
        args.calls = 1000 if args.instructions else 20000

    if args.grpc_client:
        grpc_client(args.grpc_client, args.calls, args.concurrency)
        return
    if args.serve == "framework":
        serve_framework(args.port, args.grpc_port, args.repo, args.db, not args.no_metrics,
                        not args.no_outbox)
        return
    if args.serve:
        serve = serve_bare_http if args.serve == "bare-http" else serve_bare_grpc
        serve(args.port, args.repo, args.db)
        return
    if args.instructions:
        if shutil.which("valgrind") is None:
            sys.exit("valgrind is not installed: apt-get install valgrind")
        instructions_table(args)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    if args.metrics_table_only:
        metrics_table(args)
        return

    rows: dict[str, list[tuple[str, ...]]] = {"http": [], "grpc": []}
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite+aiosqlite:///{Path(tmp) / 'orders.db'}"
        asyncio.run(_seed(db_url))
        for repo in ("memory", "sql"):
            for transport in args.transport or ("http", "grpc"):
                rate = {"framework": 0.0, "bare": 0.0}
                cpu = {"framework": float("inf"), "bare": float("inf")}
                for _ in range(args.rounds):
                    for kind in ("framework", "bare"):
                        per_second, cpu_us = measure(kind, transport, repo, db_url, args)
                        rate[kind] = max(rate[kind], per_second)
                        cpu[kind] = min(cpu[kind], cpu_us)
                label = "HTTP GET order" if transport == "http" else "gRPC GetOrder"
                rows[transport].append(_row(f"{label} ({repo} repo)", rate, cpu))
    print_table(
        f"Reference service get-order, best of {args.rounds} rounds. HTTP: wrk -t1 "
        f"-c{args.connections} -d{args.seconds}s vs bare FastAPI. gRPC: {args.calls} calls, "
        f"{args.concurrency} callers vs bare grpc.aio. Server CPU per request: lower is "
        "better, its ratio is bare/framework.",
        ["workload", "framework req/s", "bare req/s", "req/s ratio",
         "framework CPU us/req", "bare CPU us/req", "CPU ratio"],
        [*rows["http"], *rows["grpc"]],
    )
    if not args.no_metrics_table:
        metrics_table(args)


def metrics_table(args: argparse.Namespace) -> None:
    """The reference service with metrics on vs off, interleaved, memory repository."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite+aiosqlite:///{Path(tmp) / 'orders.db'}"
        asyncio.run(_seed(db_url))
        for transport in args.transport or ("http", "grpc"):
            kinds = ("framework", "framework-nometrics")
            rate = dict.fromkeys(kinds, 0.0)
            cpu = dict.fromkeys(kinds, float("inf"))
            for _ in range(args.rounds):
                for kind in kinds:
                    per_second, cpu_us = measure(kind, transport, "memory", db_url, args)
                    rate[kind] = max(rate[kind], per_second)
                    cpu[kind] = min(cpu[kind], cpu_us)
            on, off = "framework", "framework-nometrics"
            label = "HTTP GET order" if transport == "http" else "gRPC GetOrder"
            rows.append((
                f"{label} (memory repo)",
                f"{rate[on]:.0f}", f"{rate[off]:.0f}", f"{rate[on] / rate[off]:.2f}x",
                f"{cpu[on]:.0f}", f"{cpu[off]:.0f}", f"{cpu[off] / cpu[on]:.2f}x",
            ))
    print_table(
        f"Metrics cost: the reference service with metrics on vs off, best of {args.rounds} "
        "rounds (target: on >= 0.95x off).",
        ["workload", "metrics on req/s", "metrics off req/s", "req/s ratio",
         "on CPU us/req", "off CPU us/req", "CPU ratio (off/on)"],
        rows,
    )


if __name__ == "__main__":
    main()
