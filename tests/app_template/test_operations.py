"""The reference service's production settings: metrics on by default at GET /metrics; rate
limiting and JWT off by default and working once turned on in the config."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from app_template.conf.conf import Bootstrap
from app_template.wire import wire_app

from .conftest import UNKNOWN_ID, endpoint, make_bootstrap

SECRET = "reference-service-test-secret-32b!"


def _bootstrap(tmp_path: Path, **sections: Any) -> Bootstrap:
    base = make_bootstrap(f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}")
    return Bootstrap.model_validate({**base.model_dump(by_alias=True), **sections})


async def test_metrics_are_on_by_default(tmp_path: Path) -> None:
    app = wire_app(_bootstrap(tmp_path))
    app.handle_signals = False
    async with app, httpx.AsyncClient(base_url=endpoint(app, "http")) as client:
        assert (await client.get("/v1/orders")).status_code == 200
        assert (await client.get(f"/v1/orders/{UNKNOWN_ID}")).status_code == 404
        text = (await client.get("/metrics")).text
    counts = {
        (sample.labels["http_route"], sample.labels["http_response_status_code"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "http_server_request_duration_seconds_count"
    }
    assert counts == {("/v1/orders", "200"): 1, ("/v1/orders/{order_id}", "404"): 1}


async def test_jwt_and_rate_limit_from_config(tmp_path: Path) -> None:
    bootstrap = _bootstrap(
        tmp_path,
        auth={"enabled": True, "key": SECRET, "public_operations": ["GET /v1/orders"]},
        ratelimit={
            "enabled": True,
            "limiter": "token_bucket",
            "rate": 0.001,
            "burst": 2,
            "operations": ["GET /v1/orders/{order_id}"],
        },
    )
    app = wire_app(bootstrap)
    app.handle_signals = False
    token = jwt.encode({"sub": "t", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    signed = {"Authorization": f"Bearer {token}"}
    async with app, httpx.AsyncClient(base_url=endpoint(app, "http")) as client:
        assert (await client.get("/v1/orders")).status_code == 200  # public
        refused = await client.get(f"/v1/orders/{UNKNOWN_ID}")
        assert (refused.status_code, refused.json()["reason"]) == (401, "UNAUTHORIZED")
        path = f"/v1/orders/{UNKNOWN_ID}"
        codes = [(await client.get(path, headers=signed)).status_code for _ in range(3)]
    # The refused unauthenticated call took a token too: the limit comes first.
    assert codes == [404, 429, 429]


def test_auth_enabled_needs_a_key() -> None:
    with pytest.raises(ValidationError, match=r"auth\.enabled needs a key"):
        Bootstrap.model_validate({"auth": {"enabled": True}})


def test_deploy_scrapes_the_metrics_endpoint() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((root / "configs" / "config.yaml").read_text())
    path = config["metrics"]["path"]
    collector = yaml.safe_load((root / "deploy" / "otel-collector.yaml").read_text())
    (job,) = collector["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert job["metrics_path"] == path
    assert job["static_configs"][0]["targets"] == ["app:8000"]
    assert "prometheus" in collector["service"]["pipelines"]["metrics"]["receivers"]
    compose = yaml.safe_load((root / "deploy" / "compose.yaml").read_text())
    assert "8000:8000" in compose["services"]["app"]["ports"]
    deployment = yaml.safe_load((root / "deploy" / "k8s" / "deployment.yaml").read_text())
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": path,
    }


def test_admission_limits_from_config(tmp_path: Path) -> None:
    from framework.middleware.ratelimit import MaxInFlight
    from framework.transport.grpc import GrpcServer
    from framework.transport.http import HttpServer

    sections = make_bootstrap(f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}").model_dump(
        by_alias=True
    )
    sections["server"]["http"]["max_in_flight"] = 3
    sections["server"]["grpc"]["max_in_flight"] = 2
    app = wire_app(Bootstrap.model_validate(sections))
    http = next(s for s in app.servers if isinstance(s, HttpServer))
    grpc_server = next(s for s in app.servers if isinstance(s, GrpcServer))
    assert http.admission is not None and isinstance(http.admission.limiter, MaxInFlight)
    assert http.admission.limiter.limit == 3
    assert isinstance(grpc_server.admission, MaxInFlight) and grpc_server.admission.limit == 2
    default = wire_app(_bootstrap(tmp_path))
    assert all(getattr(s, "admission", None) is None for s in default.servers)
