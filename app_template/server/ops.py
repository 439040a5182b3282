"""Production concerns shared by every server: metrics, rate limiting, authentication."""

from __future__ import annotations

from dataclasses import dataclass, field

from framework.auth import JwtVerifier, jwt_auth, jwt_handshake
from framework.metrics import Metrics, metrics, setup_metrics
from framework.middleware import Middleware, selector
from framework.middleware.ratelimit import BBR, Limiter, LoopLag, TokenBucket, ratelimit
from framework.transport.websocket.handshake import Authenticate

from app_template.conf.conf import AuthConf, Bootstrap, RateLimitConf

__all__ = ["Operations", "new_operations"]


@dataclass
class Operations:
    """What :func:`new_operations` built from the config.

    Attributes:
        metrics: the service's metrics (``None`` when ``metrics.enabled`` is false).
        measure: middleware that goes outermost (after tracing): metrics.
        guards: middleware that refuses early: rate limit, then authentication.
        authenticate: the WebSocket handshake hook when authentication is on.
    """

    metrics: Metrics | None = None
    measure: list[Middleware] = field(default_factory=list)
    guards: list[Middleware] = field(default_factory=list)
    authenticate: Authenticate | None = None


def _limiter(conf: RateLimitConf) -> Middleware:
    if conf.limiter == "bbr":
        # One limiter for every server: they share the process's CPU.
        pressure = LoopLag().read if conf.signal == "loop_lag" else None
        limit = ratelimit(BBR(cpu_threshold=conf.cpu_threshold, cpu=pressure))
    else:
        rate, burst = conf.rate, conf.burst

        def bucket(operation: str) -> Limiter:
            return TokenBucket(rate, burst)

        limit = ratelimit(per_operation=bucket)
    if not conf.operations:
        return limit
    return selector(limit).path(*conf.operations).build()


def _auth(conf: AuthConf) -> tuple[Middleware, Authenticate]:
    verifier = JwtVerifier(
        conf.key,
        algorithms=conf.algorithms,
        audience=conf.audience,
        issuer=conf.issuer,
        leeway=conf.leeway,
    )
    public = frozenset(conf.public_operations)
    guard = selector(jwt_auth(verifier)).match(lambda operation: operation not in public).build()
    return guard, jwt_handshake(verifier)


def new_operations(bootstrap: Bootstrap) -> Operations:
    """Metrics (on by default), rate limiting and JWT (off by default) from the config."""
    ops = Operations()
    if bootstrap.metrics.enabled:
        # Not the global provider: a process (a test run) may build several services.
        ops.metrics = setup_metrics(
            bootstrap.app.name, service_version=bootstrap.app.version, set_global=False
        )
        ops.measure.append(metrics(ops.metrics.provider))
    if bootstrap.ratelimit.enabled:
        ops.guards.append(_limiter(bootstrap.ratelimit))
    if bootstrap.auth.enabled:
        guard, ops.authenticate = _auth(bootstrap.auth)
        ops.guards.append(guard)
    return ops
