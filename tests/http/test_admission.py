"""Server-level admission: requests over the limit are refused with 429 ``RATELIMIT`` before
FastAPI routes them; probes and scrapes are never refused."""

from __future__ import annotations

import asyncio

import httpx

from framework.metrics import metrics, mount_metrics, setup_metrics
from framework.middleware import Handler, recovery
from framework.middleware.ratelimit import RATELIMIT, MaxInFlight
from framework.transport.http import HttpServer, Router


async def test_requests_over_the_limit_are_refused_before_routing() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()
    chain_runs: list[str] = []

    def spy(handler: Handler) -> Handler:
        async def run(request: object) -> object:
            chain_runs.append("ran")
            return await handler(request)

        return run

    routes = Router()

    @routes.get("/slow")
    async def slow() -> dict[str, int]:
        entered.set()
        await release.wait()
        return {"ok": 1}

    limiter = MaxInFlight(1)
    provided = setup_metrics("admission-test", set_global=False)
    server = HttpServer(port=0, middlewares=[spy, metrics(provided.provider), recovery()],
                        admission=limiter)
    server.include_router(routes)
    mount_metrics(server, provided)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.endpoint, timeout=10) as client:
            running = asyncio.create_task(client.get("/slow"))
            await asyncio.wait_for(entered.wait(), 10)
            refused = await client.get("/slow")
            missing = await client.get("/no/such/route")  # refused too: before routing
            probes = [(await client.get(path)).status_code for path in ("/healthz", "/metrics")]
            release.set()
            admitted = await running
            after = await client.get("/slow")  # the slot is free again
            exposition = provided.exposition().decode()
    finally:
        await server.stop(5)
        provided.shutdown()
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/json"
    body = refused.json()
    assert body["code"] == 429 and body["reason"] == RATELIMIT and body["message"]
    assert missing.status_code == 429
    assert probes == [200, 200]
    assert admitted.status_code == 200 and after.status_code == 200
    assert chain_runs == ["ran", "ran"]  # the refusals never reached the middleware chain
    assert server.admission is not None and server.admission.refused == 2
    # ...and the metrics count them all the same, though no middleware saw them.
    [refusals] = [line for line in exposition.splitlines()
                  if line.startswith("pykratos_server_refused_requests_total{")]
    assert 'pykratos_server_kind="http"' in refusals and 'error_type="RATELIMIT"' in refusals
    assert refusals.endswith(" 2.0")
    assert limiter.in_flight == 0


def test_admission_is_off_by_default() -> None:
    assert HttpServer(port=0).admission is None


def test_the_openapi_document_lists_the_admission_refusal() -> None:
    def document(admission: MaxInFlight | None) -> dict[str, object]:
        routes = Router()

        @routes.get("/items")
        async def items() -> dict[str, int]:
            return {"ok": 1}

        server = HttpServer(port=0, admission=admission)
        server.include_router(routes)
        return server.app.openapi()

    def responses(doc: dict[str, object]) -> dict[str, object]:
        return doc["paths"]["/items"]["get"]["responses"]  # type: ignore[index,no-any-return]

    limited = responses(document(MaxInFlight(1)))
    assert "429" in limited and RATELIMIT in limited["429"]["description"]  # type: ignore[index]
    assert "429" not in responses(document(None))
