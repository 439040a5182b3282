"""gRPC unary throughput: pykratos GrpcServer vs a bare grpc.aio server, in one run.

Run from the repo root::

    python -m bench.grpc_bench [--calls 20000] [--concurrency 32] [--rounds 3]

Both servers serve the same ``GetOrder`` work (look an order up in a dict, build the reply
message) in their own processes. The framework server uses its default middleware (recovery +
access log, the access log's INFO level disabled: logging at WARNING). One grpc.aio client,
in a third process so it does not share a core's time with the server it loads, makes
``--calls`` calls from ``--concurrency`` concurrent callers against each server in turn,
``--rounds`` times, alternating (bare, framework, bare, ...) so machine noise hits both.

Printed per server: the median req/s over the rounds, every round's req/s, and the server
process' CPU time per call (user+system, all its threads, from /proc): on a machine where the
client is the bottleneck req/s converge, and CPU per call still shows the server's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["main"]

ORDER_PROTO = """
syntax = "proto3";
package benchorder.v1;

message GetOrderRequest { string id = 1; }
message Item { string sku = 1; int32 quantity = 2; int64 price_cents = 3; }
message Order {
  string id = 1;
  string customer_id = 2;
  string status = 3;
  int64 total_cents = 4;
  repeated Item items = 5;
}
service OrderService { rpc GetOrder(GetOrderRequest) returns (Order); }
"""
ORDER_COUNT = 1000
TARGET_RATIO = 0.85


# -- protos -------------------------------------------------------------------------------


def compile_proto(out_dir: Path) -> None:
    """Write the bench proto under ``out_dir/proto`` and compile it into ``out_dir/gen``."""
    from grpc_tools import protoc

    proto_root = out_dir / "proto"
    gen = out_dir / "gen"
    (proto_root / "benchorder" / "v1").mkdir(parents=True)
    gen.mkdir()
    (proto_root / "benchorder" / "v1" / "order.proto").write_text(ORDER_PROTO)
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"--python_out={gen}",
            f"--grpc_python_out={gen}",
            "benchorder/v1/order.proto",
        ]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status}")


def load_proto(out_dir: Path) -> tuple[ModuleType, ModuleType]:
    sys.path.insert(0, str(out_dir / "gen"))
    return (
        importlib.import_module("benchorder.v1.order_pb2"),
        importlib.import_module("benchorder.v1.order_pb2_grpc"),
    )


def make_orders() -> dict[str, dict[str, Any]]:
    return {
        f"order-{n}": {
            "customer_id": f"customer-{n % 97}",
            "status": "PAID" if n % 3 else "CREATED",
            "items": [(f"sku-{n}-{i}", i + 1, 199 * (i + 1)) for i in range(3)],
        }
        for n in range(ORDER_COUNT)
    }


# -- servers ------------------------------------------------------------------------------


async def serve(mode: str, out_dir: Path) -> None:
    """Serve GetOrder until stdin closes; print ``PORT <n>`` once ready."""
    import grpc

    pb2, pb2_grpc = load_proto(out_dir)
    orders = make_orders()

    def build(order_id: str, order: dict[str, Any]) -> Any:
        items = [pb2.Item(sku=s, quantity=q, price_cents=p) for s, q, p in order["items"]]
        return pb2.Order(
            id=order_id,
            customer_id=order["customer_id"],
            status=order["status"],
            total_cents=sum(q * p for _, q, p in order["items"]),
            items=items,
        )

    stop: Any
    if mode == "bare":

        class BareOrders:
            async def GetOrder(self, request: Any, context: Any) -> Any:
                order = orders.get(request.id)
                if order is None:
                    await context.abort(grpc.StatusCode.NOT_FOUND, "order not found")
                    raise AssertionError("unreachable: abort raises")
                return build(request.id, order)

        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb2_grpc.add_OrderServiceServicer_to_server(BareOrders(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stop = server.stop
    else:
        from framework.errors import NotFound
        from framework.transport.grpc import GrpcServer

        class Orders:
            async def GetOrder(self, request: Any, context: Any) -> Any:
                order = orders.get(request.id)
                if order is None:
                    raise NotFound("ORDER_NOT_FOUND", f"order {request.id} not found")
                return build(request.id, order)

        framework_server = GrpcServer(name="bench")
        framework_server.register(pb2_grpc.add_OrderServiceServicer_to_server, Orders())
        await framework_server.start()
        framework_server.set_serving(True)
        port = int(framework_server.endpoint.rsplit(":", 1)[1])
        stop = framework_server.stop
    print(f"PORT {port}", flush=True)
    # The orchestrator closes our stdin to stop us.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await stop(1.0)


# -- client -------------------------------------------------------------------------------


async def load(target: str, calls: int, concurrency: int, out_dir: Path) -> dict[str, Any]:
    """Make ``calls`` GetOrder calls from ``concurrency`` callers after a warm-up."""
    import grpc

    pb2, pb2_grpc = load_proto(out_dir)
    requests = [pb2.GetOrderRequest(id=f"order-{n}") for n in range(ORDER_COUNT)]
    per_caller = max(calls // concurrency, 1)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb2_grpc.OrderServiceStub(channel)
        get_order = stub.GetOrder

        async def caller(offset: int, count: int) -> None:
            for n in range(count):
                reply = await get_order(requests[(offset + n) % ORDER_COUNT])
                if not reply.items:
                    raise RuntimeError(f"bad reply {reply}")

        warmup = max(per_caller // 10, 20)
        await asyncio.gather(*(caller(c * 31, warmup) for c in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(caller(c * 31, per_caller) for c in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "calls": per_caller * concurrency,
        "warmup_calls": warmup * concurrency,
        "seconds": elapsed,
    }


# -- orchestration ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of process ``pid`` (all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(mode: str, out_dir: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--role", "server", "--mode", mode, "--dir", str(out_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"{mode} server failed to start (said {line!r})")
    return proc, int(line.split()[1])


def run_client(port: int, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable, __file__, "--role", "client", "--dir", str(out_dir),
            "--target", f"127.0.0.1:{port}",
            "--calls", str(args.calls), "--concurrency", str(args.concurrency),
        ],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def orchestrate(args: argparse.Namespace) -> None:
    out_dir = Path(tempfile.mkdtemp(prefix="pykratos-grpc-bench-"))
    servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
    try:
        compile_proto(out_dir)
        modes = {"bare": "bare grpc.aio", "framework": "pykratos GrpcServer"}
        for mode in modes:
            servers[mode] = start_server(mode, out_dir)
        rates: dict[str, list[float]] = {mode: [] for mode in modes}
        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(args.rounds):
            for mode, (proc, port) in servers.items():
                before = cpu_seconds(proc.pid)
                result = run_client(port, args, out_dir)
                used = cpu_seconds(proc.pid) - before
                rates[mode].append(result["calls"] / result["seconds"])
                # The server also spent CPU on the warm-up calls: count them too.
                cpu[mode].append(used / (result["calls"] + result["warmup_calls"]) * 1e6)
        print(
            f"gRPC unary GetOrder: {args.calls} calls x {args.rounds} rounds per server, "
            f"{args.concurrency} concurrent callers, grpc.aio client in its own process"
        )
        print(f"{'server':<22}{'req/s (median)':>16}  {'rounds':<28}{'server CPU us/call':>20}")
        for mode, label in modes.items():
            rounds = " ".join(f"{r:,.0f}" for r in rates[mode])
            print(
                f"{label:<22}{statistics.median(rates[mode]):>16,.0f}  {rounds:<28}"
                f"{statistics.median(cpu[mode]):>20.1f}"
            )
        ratio = statistics.median(rates["framework"]) / statistics.median(rates["bare"])
        cpu_ratio = statistics.median(cpu["bare"]) / statistics.median(cpu["framework"])
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(f"ratio framework/bare req/s: {ratio:.2f} (target >= {TARGET_RATIO}: {verdict})")
        print(f"ratio bare/framework server CPU per call: {cpu_ratio:.2f}")
    finally:
        for proc, _ in servers.values():
            if proc.stdin is not None:
                proc.stdin.close()
        for proc, _ in servers.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(out_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="measured calls per round")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent callers")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument(
        "--role",
        choices=("orchestrator", "server", "client"),
        default="orchestrator",
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--mode", choices=("bare", "framework"), help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "server":
        # The access log's INFO lines are disabled, as in production at WARNING.
        logging.basicConfig(level=logging.WARNING)
        asyncio.run(serve(args.mode, args.dir))
    elif args.role == "client":
        result = asyncio.run(load(args.target, args.calls, args.concurrency, args.dir))
        print(json.dumps(result), flush=True)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
