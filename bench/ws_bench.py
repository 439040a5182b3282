"""WebSocket: echo round trips and fan-out, the framework vs a bare ``websockets`` server.

Both servers run in this process on the same event loop (uvloop when installed), one after
the other, with the same ``websockets.asyncio.server.serve`` settings (no compression, 1 MiB
max message). The load comes from a client in a separate process: a minimal WebSocket client
written on raw asyncio protocols (pre-encoded masked frames, frame counting), so that the
client costs far less than the servers and the ratio shows server-side overhead.

Echo: ``--conns`` connections each do ``--round-trips`` sequential round trips of
``{"type": "echo", "id": n, "payload": {...}}``. The framework serves it with
``@ws.on("echo")`` returning the payload (reply envelope built by the framework); the bare
server parses the envelope with orjson, builds the same reply envelope and sends it.
Figures: round trips/s (wall clock) and server CPU microseconds per round trip (this process's
CPU time: robust on a noisy machine). The ratio is framework / bare.

Fan-out: ``--fanout-clients`` connections; the server sends ``--fanout-messages`` messages to
all of them (framework: ``server.broadcast``; bare: ``websockets.broadcast``); the figure is
messages delivered per second, from the first broadcast until the client saw every message on
every connection.

    python -m bench.ws_bench [--conns 50] [--round-trips 1000] [--rounds 3]
                             [--fanout-clients 1000] [--fanout-messages 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from bench._util import print_table

PAYLOAD = {"order_id": "0" * 31 + "1", "status": "paid", "amount_cents": 1250}
_SERVE_KW: dict[str, Any] = {"compression": None, "max_size": 1024 * 1024}


# --------------------------------------------------------------------------------------
# minimal client (runs in the client process)
# --------------------------------------------------------------------------------------


def _client_frame(data: bytes) -> bytes:
    """A masked text frame with an all-zero mask key (valid, and the payload needs no XOR)."""
    size = len(data)
    if size < 126:
        header = bytes((0x81, 0x80 | size))
    elif size < 65536:
        header = bytes((0x81, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + data


class _RawClient(asyncio.Protocol):
    """Handshake, then hand every complete server frame's payload to ``on_frame``."""

    def __init__(self, path: str, host: str) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.buffer = bytearray()
        self.open: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.on_frame: Callable[[bytes], None] = lambda _data: None

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.open.done():
            self.open.set_exception(ConnectionError(f"closed during handshake: {exc}"))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.open.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:12])
            del buf[: end + 4]
            if b" 101" not in status:
                self.open.set_exception(ConnectionError(f"handshake refused: {status!r}"))
                return
            self.open.set_result(None)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if size - start < length:
                break
            if buf[pos] & 0x0F in (0x1, 0x2):
                self.on_frame(bytes(buf[start : start + length]))
            pos = start + length
        if pos:
            del buf[:pos]


async def _open(port: int, path: str = "/") -> _RawClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: _RawClient(path, f"127.0.0.1:{port}"), "127.0.0.1", port
    )
    await client.open
    return client


async def _open_many(port: int, count: int, batch: int = 100) -> list[_RawClient]:
    clients: list[_RawClient] = []
    for first in range(0, count, batch):
        clients += await asyncio.gather(*(_open(port) for _ in range(min(batch, count - first))))
    return clients


_CLOSE_FRAME = bytes((0x88, 0x82)) + b"\0\0\0\0" + (1000).to_bytes(2, "big")


async def _close_all(clients: list[_RawClient]) -> None:
    """Close handshake: send a close frame; the server answers and closes the TCP connection."""
    for client in clients:
        assert client.transport is not None
        client.transport.write(_CLOSE_FRAME)
    await asyncio.wait_for(asyncio.gather(*(c.closed for c in clients)), 30)


async def _echo_load(port: int, conns: int, round_trips: int) -> dict[str, Any]:
    """Each connection sends the next request as soon as the previous reply arrived."""
    clients = await _open_many(port, conns)
    loop = asyncio.get_running_loop()
    done: list[asyncio.Future[bytes]] = []
    for client in clients:
        future: asyncio.Future[bytes] = loop.create_future()
        done.append(future)
        frames = [
            _client_frame(orjson.dumps({"type": "echo", "id": n, "payload": PAYLOAD}))
            for n in range(round_trips)
        ]
        state = {"next": 1}
        transport = client.transport
        assert transport is not None

        def on_frame(
            data: bytes,
            frames: list[bytes] = frames,
            state: dict[str, int] = state,
            future: asyncio.Future[bytes] = future,
            transport: asyncio.Transport = transport,
        ) -> None:
            n = state["next"]
            if n < len(frames):
                transport.write(frames[n])
                state["next"] = n + 1
            elif not future.done():
                future.set_result(data)

        client.on_frame = on_frame
    start = time.perf_counter()
    for client in clients:
        assert client.transport is not None
        client.transport.write(
            _client_frame(orjson.dumps({"type": "echo", "id": 0, "payload": PAYLOAD}))
        )
    last = await asyncio.gather(*done)
    elapsed = time.perf_counter() - start
    await _close_all(clients)
    reply = orjson.loads(last[0])
    if reply != {"type": "echo.reply", "id": round_trips - 1, "payload": PAYLOAD}:
        raise AssertionError(f"unexpected final reply {reply!r}")
    return {"elapsed": elapsed, "round_trips": conns * round_trips}


async def _fanout_load(port: int, clients_n: int, messages: int) -> dict[str, Any]:
    """Connect, announce readiness, count broadcast frames until every client has all."""
    clients = await _open_many(port, clients_n)
    loop = asyncio.get_running_loop()
    remaining = {"clients": clients_n}
    all_done: asyncio.Future[float] = loop.create_future()
    first: list[float] = []
    for client in clients:
        count = {"n": 0}

        def on_frame(data: bytes, count: dict[str, int] = count) -> None:
            if not first:
                first.append(time.perf_counter())
            count["n"] += 1
            if count["n"] == messages:
                remaining["clients"] -= 1
                if remaining["clients"] == 0:
                    all_done.set_result(time.perf_counter())

        client.on_frame = on_frame
    assert clients[0].transport is not None
    clients[0].transport.write(_client_frame(b'{"type":"ready"}'))
    end = await asyncio.wait_for(all_done, 120)
    await _close_all(clients)
    return {"client_elapsed": end - first[0]}


def client_main() -> None:
    """Client process: read one JSON command per stdin line, answer one JSON line."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    async def serve_commands() -> None:
        while True:
            # Read commands off the loop thread: the loop must keep running between commands
            # (closing the previous run's connections, answering close handshakes).
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            cmd = json.loads(line)
            if cmd["op"] == "echo":
                result = await _echo_load(cmd["port"], cmd["conns"], cmd["round_trips"])
            elif cmd["op"] == "fanout":
                result = await _fanout_load(cmd["port"], cmd["clients"], cmd["messages"])
            else:
                return
            print(json.dumps(result), flush=True)

    asyncio.run(serve_commands())


# --------------------------------------------------------------------------------------
# servers (run in this process)
# --------------------------------------------------------------------------------------


class Client:
    """The client process, driven over stdin/stdout."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.ws_bench", "--client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            text=True,
        )

    async def run(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if not line:
            raise RuntimeError("the client process died (see its stderr above)")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.proc.stdin.flush()
        self.proc.wait(10)


class Target:
    """A server under test: start/stop plus, for fan-out, a way to broadcast."""

    name = ""
    port = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def broadcast(self, data: bytes) -> None: ...

    ready: asyncio.Event


class FrameworkTarget(Target):
    name = "framework"

    def __init__(self) -> None:
        from framework.transport.websocket import Session, WebSocketServer

        self.ready = asyncio.Event()
        self.server = WebSocketServer(
            "127.0.0.1", 0, ping_interval=None, send_queue_size=4096, max_message_size=1 << 20
        )

        @self.server.on("echo")
        async def echo(payload: Any) -> Any:
            return payload

        @self.server.on("ready")
        async def ready(session: Session) -> None:
            self.ready.set()

    async def start(self) -> None:
        await self.server.start()
        self.port = int(self.server.endpoint.rsplit(":", 1)[1])

    async def stop(self) -> None:
        await self.server.stop(5)

    async def broadcast(self, data: bytes) -> None:
        # The real API: the framework builds the envelope and encodes it once per broadcast.
        await self.server.broadcast(PAYLOAD, type="tick")


class BareTarget(Target):
    name = "bare websockets"

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.server: Any = None

    async def _handler(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            await self._serve(ws)

    async def _serve(self, ws: Any) -> None:
        async for raw in ws:
            try:
                envelope = orjson.loads(raw)
            except orjson.JSONDecodeError:
                await ws.send(b'{"type":"error"}', text=True)
                continue
            kind = envelope.get("type") if type(envelope) is dict else None
            if type(kind) is not str:
                await ws.send(b'{"type":"error"}', text=True)
                continue
            if kind == "ready":
                self.ready.set()
                continue
            reply: dict[str, Any] = {"type": kind + ".reply", "payload": envelope.get("payload")}
            if envelope.get("id") is not None:
                reply = {"type": kind + ".reply", "id": envelope["id"], **reply}
            await ws.send(orjson.dumps(reply), text=True)

    async def start(self) -> None:
        from websockets.asyncio.server import serve

        self.server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            ping_interval=None,
            write_limit=64 * 1024,
            **_SERVE_KW,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def broadcast(self, data: bytes) -> None:
        from websockets.asyncio.server import broadcast

        broadcast(self.server.connections, data, text=True)


async def _measure_echo(target: Target, client: Client, conns: int, rts: int) -> dict[str, float]:
    await target.start()
    try:
        cpu = time.process_time()
        result = await client.run(op="echo", port=target.port, conns=conns, round_trips=rts)
        cpu = time.process_time() - cpu
    finally:
        await target.stop()
    total = result["round_trips"]
    return {"rps": total / result["elapsed"], "cpu_us": cpu / total * 1e6}


async def _measure_fanout(
    target: Target, client: Client, clients_n: int, messages: int
) -> dict[str, float]:
    await target.start()
    try:
        pending = asyncio.create_task(
            client.run(op="fanout", port=target.port, clients=clients_n, messages=messages)
        )
        await asyncio.wait_for(target.ready.wait(), 120)
        data = orjson.dumps({"type": "tick", "payload": PAYLOAD})
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(messages):
            await target.broadcast(data)
            await asyncio.sleep(0)  # let the writers and the loop breathe between messages
        broadcast_cpu = time.process_time() - cpu
        result = await pending
        elapsed = time.perf_counter() - start
    finally:
        await target.stop()
    delivered = clients_n * messages
    return {
        "delivered_per_s": delivered / elapsed,
        "client_elapsed": result["client_elapsed"],
        "cpu_us_per_delivery": broadcast_cpu / delivered * 1e6,
    }


async def run(args: argparse.Namespace) -> None:
    client = Client()
    try:
        runs: dict[str, list[dict[str, float]]] = {"framework": [], "bare websockets": []}
        # Warm-up (imports, JIT-less caches, the client's first connections).
        await _measure_echo(BareTarget(), client, args.conns, max(args.round_trips // 10, 10))
        await _measure_echo(FrameworkTarget(), client, args.conns, max(args.round_trips // 10, 10))
        for _ in range(args.rounds):
            for target in (BareTarget(), FrameworkTarget()):
                runs[target.name].append(
                    await _measure_echo(target, client, args.conns, args.round_trips)
                )
        rows = []
        best = {name: max(r["rps"] for r in rs) for name, rs in runs.items()}
        cpu = {name: statistics.median(r["cpu_us"] for r in rs) for name, rs in runs.items()}
        for name in ("bare websockets", "framework"):
            rows.append(
                [
                    name,
                    f"{best[name]:,.0f}",
                    " ".join(f"{r['rps']:,.0f}" for r in runs[name]),
                    f"{cpu[name]:.1f}",
                ]
            )
        print_table(
            f"echo: {args.conns} connections x {args.round_trips} round trips, "
            f"best of {args.rounds} (rounds alternate bare/framework)",
            ["server", "round trips/s (best)", "each round", "server CPU us/round trip (median)"],
            rows,
        )
        print(
            f"  ratio framework/bare: throughput {best['framework'] / best['bare websockets']:.2f}x"
            f", CPU per round trip {cpu['bare websockets'] / cpu['framework']:.2f}x"
            " (bare CPU / framework CPU)"
        )

        if args.fanout_clients:
            rows = []
            for target in (BareTarget(), FrameworkTarget()):
                r = await _measure_fanout(target, client, args.fanout_clients, args.fanout_messages)
                rows.append(
                    [
                        target.name,
                        f"{r['delivered_per_s']:,.0f}",
                        f"{r['cpu_us_per_delivery']:.2f}",
                    ]
                )
            print_table(
                f"fan-out: {args.fanout_clients} clients x {args.fanout_messages} broadcasts",
                ["server", "messages delivered/s", "server CPU us/delivery (broadcast calls)"],
                rows,
            )
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--round-trips", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fanout-clients", type=int, default=1000)
    parser.add_argument("--fanout-messages", type=int, default=100)
    parser.add_argument("--no-uvloop", action="store_true", help="plain asyncio event loop")
    args = parser.parse_args()
    if args.client:
        client_main()
        return
    runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            runner = uvloop.run
    runner(run(args))


if __name__ == "__main__":
    main()
