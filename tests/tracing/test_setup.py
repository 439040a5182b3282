"""setup_tracing(), and the core staying importable without OpenTelemetry.

What touches process-wide state (the global tracer provider, a missing package) runs in a
subprocess, so this test session keeps an untraced global provider.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from framework.tracing import TracingUnavailableError, setup_tracing

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_provider_carries_the_service_and_exports_to_a_given_exporter() -> None:
    exporter = InMemorySpanExporter()
    provider = setup_tracing(
        "orders", exporter, service_version="1.2.3", batch=False, set_global=False
    )
    with provider.get_tracer("t").start_as_current_span("work"):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.name == "work"
    assert span.resource.attributes["service.name"] == "orders"
    assert span.resource.attributes["service.version"] == "1.2.3"
    provider.shutdown()


def test_batch_export_flushes_on_shutdown_and_ratio_zero_samples_nothing() -> None:
    batched = InMemorySpanExporter()
    provider = setup_tracing("orders", batched, set_global=False)
    with provider.get_tracer("t").start_as_current_span("queued"):
        pass
    provider.shutdown()  # the batch processor flushes what it queued
    assert [s.name for s in batched.get_finished_spans()] == ["queued"]

    unsampled = InMemorySpanExporter()
    provider = setup_tracing("orders", unsampled, sample_ratio=0.0, batch=False, set_global=False)
    with provider.get_tracer("t").start_as_current_span("dropped") as span:
        assert span.get_span_context().is_valid  # still propagates a trace id
    assert unsampled.get_finished_spans() == ()
    provider.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exporter": "jaeger"}, "unknown exporter 'jaeger'"),
        ({"sample_ratio": 1.5}, "sample_ratio must be between 0 and 1"),
        ({"exporter": "console", "endpoint": "http://c:4317"}, "endpoint only applies"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        setup_tracing("orders", set_global=False, **kwargs)  # type: ignore[arg-type]


def _otlp_installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.exporter.otlp") is not None
    except ModuleNotFoundError:  # not even the opentelemetry.exporter namespace
        return False


@pytest.mark.skipif(_otlp_installed(), reason="opentelemetry-exporter-otlp is installed")
def test_otlp_without_its_exporter_package_says_what_to_install() -> None:
    with pytest.raises(TracingUnavailableError, match="pip install opentelemetry-exporter-otlp"):
        setup_tracing("orders", "otlp", set_global=False)


def test_global_setup_is_picked_up_by_middleware_built_before_it() -> None:
    result = _run(
        """
        import asyncio
        from framework.tracing import setup_tracing, tracing
        from framework.transport import Transport, transport_scope

        async def handler(request):
            return "ok"

        run = tracing()(handler)  # built while tracing is still off

        async def main():
            with transport_scope(Transport("http", "GET /before")) as t:
                await run(None)
                assert t.reply_headers == {}, t.reply_headers
            setup_tracing("svc-under-test", "console")
            with transport_scope(Transport("http", "GET /after")) as t:
                await run(None)
                assert t.reply_headers["traceparent"].startswith("00-"), t.reply_headers
            try:
                setup_tracing("again", "none")
            except RuntimeError as exc:
                print("second setup:", exc)

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert '"name": "GET /after"' in result.stdout
    assert "GET /before" not in result.stdout
    assert '"service.name": "svc-under-test"' in result.stdout
    assert "second setup: a global OpenTelemetry tracer provider is already installed" in (
        result.stdout
    )


def test_core_imports_and_runs_without_opentelemetry() -> None:
    result = _run(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the otel extra were not installed

        import framework, framework.broker, framework.log, framework.middleware
        import framework.tracing
        from framework.tracing import inject, otel_available

        assert not otel_available()
        assert inject({"a": "1"}) == {"a": "1"}
        assert not any(name.startswith("opentelemetry") for name in sys.modules
                       if sys.modules[name] is not None)
        for use in ("framework.tracing.tracing",
                    "framework.tracing.setup_tracing",
                    "framework.tracing.extract({})"):
            try:
                eval(use)
            except ImportError as exc:
                print(type(exc).__name__, "|", exc)
        import logging
        from framework.log import setup_logging
        setup_logging("json")
        logging.getLogger("t").warning("still logs")
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    for line in lines:
        assert line.startswith("TracingUnavailableError | "), line
        assert "pip install 'pykratos[otel]'" in line
    assert '"trace_id":""' in result.stderr and "still logs" in result.stderr
