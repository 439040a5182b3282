"""MetricsServer: the exposition on a port of its own, run by the App like any server."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from framework import App
from framework.metrics import MetricsServer, setup_metrics
from framework.metrics.instruments import instruments_for


async def test_admin_port_serves_the_exposition() -> None:
    metrics = setup_metrics("admin-test", set_global=False, observe=False)
    instruments_for(metrics.provider).record_for("http", "GET /x").record(0.01, 200, None)
    server = MetricsServer(metrics, "127.0.0.1", 0)
    try:
        # The client is built once the App started the server (its port is known then).
        async with (
            App("admin", servers=[server], handle_signals=False),
            httpx.AsyncClient(base_url=server.endpoint) as client,
        ):
            scrape = await client.get("/metrics")
            missing = await client.get("/other")
            health = await client.get("/healthz")
            post = await client.post("/metrics")
    finally:
        metrics.shutdown()
    assert scrape.status_code == 200
    names = {f.name for f in text_string_to_metric_families(scrape.text)}
    assert "http_server_request_duration_seconds" in names
    assert (missing.status_code, health.status_code, post.status_code) == (404, 200, 405)
