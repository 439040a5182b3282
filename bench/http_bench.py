"""HTTP: the reference service's ``GET /v1/orders/{id}`` through the framework vs bare FastAPI.

Both servers run the same work (``OrderUseCase.get`` on the same repository, the same
pydantic response model) on uvicorn with httptools and uvloop, each in its own process, and
are loaded by the same client, ``wrk`` (Debian package), in turns. Two repositories:
``sql`` (the real SQLite repository: end-to-end figure) and ``memory`` (a dict: exposes the
framework's own overhead).

    python -m bench.http_bench [--seconds 5] [--connections 32] [--rounds 2]
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
from pathlib import Path

from app_template.service.order_http import OrderView
from bench._util import free_port, print_table, serve_in_subprocess

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

    async def list(self, limit: int) -> list[object]:
        return list(self.orders.values())[:limit]

    async def set_status(self, order_id: str, status: object) -> object:
        raise NotImplementedError


async def _seed(db_url: str) -> None:
    from app_template.biz.order import Order
    from app_template.data import Database, SqlOrderRepo

    database = Database(db_url)
    await database.start()
    await SqlOrderRepo(database).save(Order(id=ORDER_ID, customer_id="c1", amount_cents=1250))
    await database.close()


def serve_framework(port: int, repo: str, db_url: str) -> None:
    """The reference service, fully wired (HTTP, gRPC, broker), HTTP on ``port``."""
    import logging

    from dependency_injector import providers

    from app_template.conf.conf import Bootstrap
    from app_template.container import Container
    from app_template.wire import wire_app

    bootstrap = Bootstrap.model_validate(
        {
            "server": {"http": {"host": "127.0.0.1", "port": port},
                       "grpc": {"host": "127.0.0.1", "port": 0}},
            "data": {"database": {"url": db_url}},
            "log": {"level": "WARNING"},
        }
    )
    logging.basicConfig(level=logging.WARNING)
    container = Container()
    if repo == "memory":
        container.order_repo.override(providers.Singleton(MemoryOrderRepo))
    wire_app(bootstrap, container).main()


def serve_bare(port: int, repo: str, db_url: str) -> None:
    """Bare FastAPI + uvicorn doing the same work, no framework."""
    import uvicorn
    import uvloop
    from fastapi import FastAPI

    from app_template.biz.order import OrderUseCase
    from app_template.data import Database, SqlOrderRepo

    database = Database(db_url)
    usecase = OrderUseCase(MemoryOrderRepo() if repo == "memory" else SqlOrderRepo(database),
                           events=None)  # type: ignore[arg-type]
    app = FastAPI()

    @app.get("/v1/orders/{order_id}")
    async def get_order(order_id: str) -> OrderView:
        return OrderView.of(await usecase.get(order_id))

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="off", http="httptools", loop="none")
    uvloop.run(uvicorn.Server(config).serve())


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per measurement")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=2,
                        help="measurements per server, interleaved; the best is kept")
    parser.add_argument("--serve", choices=["framework", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--repo", choices=["sql", "memory"], default="memory",
                        help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        (serve_framework if args.serve == "framework" else serve_bare)(args.port, args.repo,
                                                                         args.db)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite+aiosqlite:///{Path(tmp) / 'orders.db'}"
        asyncio.run(_seed(db_url))
        for repo in ("memory", "sql"):
            rate = {"framework": 0.0, "bare": 0.0}
            cpu = {"framework": float("inf"), "bare": float("inf")}
            ports = {"framework": free_port(), "bare": free_port()}
            for _ in range(args.rounds):
                for kind in ("framework", "bare"):
                    port = ports[kind]
                    cmd = ["-m", "bench.http_bench", "--serve", kind, "--repo", repo,
                           "--port", str(port), "--db", db_url]
                    with serve_in_subprocess(cmd, port) as proc:
                        url = f"http://127.0.0.1:{port}/v1/orders/{ORDER_ID}"
                        wrk(url, 1, args.connections)  # warm-up
                        before = cpu_seconds(proc.pid)
                        per_second, served = wrk(url, args.seconds, args.connections)
                        used = cpu_seconds(proc.pid) - before
                    rate[kind] = max(rate[kind], per_second)
                    cpu[kind] = min(cpu[kind], used / served * 1e6)
            rows.append((
                f"GET order ({repo} repo)",
                f"{rate['framework']:.0f}", f"{rate['bare']:.0f}",
                f"{rate['framework'] / rate['bare']:.2f}x",
                f"{cpu['framework']:.0f}", f"{cpu['bare']:.0f}",
                f"{cpu['bare'] / cpu['framework']:.2f}x",
            ))
    print_table(
        f"HTTP, wrk -t1 -c{args.connections} -d{args.seconds}s, best of {args.rounds} "
        "(server CPU per request: lower is better; its ratio is bare/framework)",
        ["workload", "framework req/s", "bare req/s", "req/s ratio",
         "framework CPU us/req", "bare CPU us/req", "CPU ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
