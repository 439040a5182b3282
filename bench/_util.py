"""Small helpers shared by the benchmarks (ports, subprocesses, tables, drain rounds)."""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence

__all__ = [
    "best_of_rounds",
    "free_port",
    "print_ratios",
    "print_table",
    "serve_in_subprocess",
    "wait_for_port",
]

#: ``drain(messages, timeout) -> msg/s`` of one contestant of a drain benchmark.
Drain = Callable[[int, float], Awaitable[float]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@contextlib.contextmanager
def serve_in_subprocess(args: Sequence[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python <args>`` until the block ends; wait until ``port`` accepts connections."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(map(str, header)), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


async def best_of_rounds(
    contestants: Mapping[str, Drain], messages: int, rounds: int, timeout: float
) -> dict[str, float]:
    """Run every contestant once per round, in an order rotating by round (so none always
    goes first on a noisy machine), print each rate and return the best of each."""
    best: dict[str, float] = dict.fromkeys(contestants, 0.0)
    names = list(contestants)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            rate = await contestants[name](messages, timeout)
            print(f"  round {r + 1}: {name:<22} {rate:>9,.0f} msg/s", flush=True)
            best[name] = max(best[name], rate)
    return best


def print_ratios(best: Mapping[str, float], rounds: int, raw: str, faststream: str) -> None:
    """The table of best rates, each as a ratio to the ``raw`` and ``faststream`` rows."""
    base = best[raw] or 1.0
    fast = best[faststream] or 1.0
    rows = [
        (name, f"{rate:,.0f}", f"{rate / base:.2f}x", f"{rate / fast:.2f}x")
        for name, rate in best.items()
    ]
    print_table(
        f"best of {rounds} round(s)",
        ("contestant", "msg/s", f"vs {raw}", "vs faststream"),
        rows,
    )
