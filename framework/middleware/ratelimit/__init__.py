"""Rate limiting middleware: a token bucket per operation and an adaptive (BBR) limiter.

::

    HttpServer(middlewares=[metrics(), ratelimit(), recovery()])            # adaptive
    orders = selector(ratelimit(per_operation=lambda op: TokenBucket(50))).prefix("POST ")
    GrpcServer(middlewares=[orders.build(), recovery()])

On a host whose cores are shared, feed BBR the event-loop lag instead of CPU usage:
``ratelimit(BBR(cpu=LoopLag().read))``. Refused calls get 429 / ``RESOURCE_EXHAUSTED`` with
reason ``RATELIMIT``.

Cheapest of all, before any routing: a server-level admission limit,
``HttpServer(admission=MaxInFlight(4))`` (or any limiter here), refuses with the same 429
``RATELIMIT`` before FastAPI runs (:mod:`framework.transport.http.admission`);
``GrpcServer(admission=...)`` refuses with RESOURCE_EXHAUSTED ``RATELIMIT`` before the chain.
"""

from framework.middleware.ratelimit.bbr import BBR, Done
from framework.middleware.ratelimit.bucket import TokenBucket
from framework.middleware.ratelimit.concurrency import MaxInFlight
from framework.middleware.ratelimit.cpu import CpuUsage
from framework.middleware.ratelimit.lag import LoopLag
from framework.middleware.ratelimit.middleware import RATELIMIT, Limiter, ratelimit

__all__ = [
    "BBR",
    "RATELIMIT",
    "CpuUsage",
    "Done",
    "Limiter",
    "LoopLag",
    "MaxInFlight",
    "TokenBucket",
    "ratelimit",
]
