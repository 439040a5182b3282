"""With the provider installed as the global one (``setup_metrics()``'s default), FastAPI's
own OpenTelemetry metrics stay off: one ``http.server.request.duration`` series per route,
the framework's, not a second one recorded by FastAPI at the SDK's recording cost."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent(
    """
    import asyncio

    import httpx

    from framework.metrics import metrics, mount_metrics, setup_metrics
    from framework.transport.http import HttpServer, Router

    provided = setup_metrics("native-check")  # set_global=True: what FastAPI looks at
    routes = Router()

    @routes.get("/x")
    async def x() -> dict[str, int]:
        return {}

    server = HttpServer(port=0, middlewares=[metrics()])
    server.include_router(routes)
    mount_metrics(server, provided)

    async def main() -> None:
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.endpoint) as client:
                await client.get("/x")
                text = (await client.get("/metrics")).text
        finally:
            await server.stop(5)
        for line in text.splitlines():
            if line.startswith("http_server_request_duration_seconds_count"):
                print(line)

    asyncio.run(main())
    """
)


def test_fastapi_records_no_second_duration_series_with_a_global_provider() -> None:
    # A subprocess: OpenTelemetry's global meter provider can be set once per process.
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    series = done.stdout.strip().splitlines()
    assert len(series) == 1, series
    assert 'otel_scope_name="pykratos"' in series[0]
    assert 'http_route="/x"' in series[0]
