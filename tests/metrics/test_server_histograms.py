"""The framework-aggregated request histograms reach every reader as OpenTelemetry data, with
the SDK's bucket semantics (upper bound inclusive), sum, count, min and max."""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import Histogram, InMemoryMetricReader

from framework.metrics import setup_metrics
from framework.metrics.instruments import instruments_for


def test_histogram_points_reach_an_extra_reader() -> None:
    extra = InMemoryMetricReader()
    metrics_ = setup_metrics("h", set_global=False, observe=False, readers=[extra])
    try:
        record = instruments_for(metrics_.provider).record_for("grpc", "/a.v1.A/Get")
        for seconds in (0.005, 0.0051, 2.0, 11.0):
            record.record(seconds, "OK", None)
        record.record(0.3, "NOT_FOUND", "NOT_FOUND")
        data = extra.get_metrics_data()
    finally:
        metrics_.shutdown()
    assert data is not None
    metrics = [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    (duration,) = [m for m in metrics if m.name == "rpc.server.call.duration"]
    assert duration.unit == "s"
    assert isinstance(duration.data, Histogram)
    points = {p.attributes["rpc.response.status_code"]: p for p in duration.data.data_points}
    ok = points["OK"]
    assert dict(ok.attributes) == {
        "rpc.system.name": "grpc",
        "rpc.method": "a.v1.A/Get",
        "rpc.response.status_code": "OK",
    }
    assert ok.count == 4 and ok.min == 0.005 and ok.max == 11.0
    assert abs(ok.sum - 13.0101) < 1e-9
    bounds = list(ok.explicit_bounds)
    counts = dict(zip([*bounds, float("inf")], ok.bucket_counts, strict=True))
    assert counts[0.005] == 1  # 0.005 is in (.., 0.005]
    assert counts[0.01] == 1
    assert counts[2.5] == 1
    assert counts[float("inf")] == 1
    assert sum(ok.bucket_counts) == 4
    assert points["NOT_FOUND"].attributes["error.type"] == "NOT_FOUND"
