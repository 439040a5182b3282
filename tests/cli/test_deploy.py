"""deploy/: manifests parse, and agree with the service's config and what it really serves."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.cli.conftest import PYTHON, ROOT, http_get, service_env, wait_for
from tests.services import free_port

DEPLOY = ROOT / "deploy"
CONFIG = yaml.safe_load((ROOT / "configs" / "config.yaml").read_text())
_PLACEHOLDER = re.compile(r"^\$\{[A-Z_]+:(.*)\}$")


def _default(value: Any) -> Any:
    """The default of a ``${VAR:default}`` placeholder (the value itself otherwise)."""
    match = _PLACEHOLDER.match(str(value))
    return yaml.safe_load(match.group(1)) if match else value


HTTP_PORT = int(_default(CONFIG["server"]["http"]["port"]))
GRPC_PORT = int(_default(CONFIG["server"]["grpc"]["port"]))
WS_PORT = int(_default(CONFIG["server"]["websocket"]["port"]))
STOP_TIMEOUT = float(CONFIG["app"]["stop_timeout"])


def _load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / "k8s" / name).read_text())


def _container() -> dict[str, Any]:
    containers = _load("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(int(p["containerPort"]) for p in container["ports"] if p["name"] == port)


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert {f.name for f in files} >= {
        "compose.yaml",
        "otel-collector.yaml",
        "deployment.yaml",
        "service.yaml",
        "configmap.yaml",
        "hpa.yaml",
        "kustomization.yaml",
    }
    for path in files:
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(isinstance(doc, dict) for doc in docs), path


def test_kustomization_lists_every_manifest() -> None:
    kustomization = _load("kustomization.yaml")
    manifests = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_deployment_ports_and_probes_match_the_config() -> None:
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": HTTP_PORT, "grpc": GRPC_PORT, "ws": WS_PORT}
    live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert (live["path"], _port_number(container, live["port"])) == ("/healthz", HTTP_PORT)
    assert (ready["path"], _port_number(container, ready["port"])) == ("/readyz", HTTP_PORT)


def test_termination_grace_covers_prestop_and_stop_timeout() -> None:
    spec = _load("deployment.yaml")["spec"]["template"]["spec"]
    pre_stop = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    sleep = float(pre_stop[1])
    assert 0 < sleep < STOP_TIMEOUT
    # Kubernetes counts the preStop hook inside the grace period, then SIGKILLs.
    assert spec["terminationGracePeriodSeconds"] >= sleep + STOP_TIMEOUT + 1


def test_configmap_is_the_config_and_is_mounted_as_configs() -> None:
    configmap = _load("configmap.yaml")
    assert yaml.safe_load(configmap["data"]["config.yaml"]) == CONFIG, (
        "deploy/k8s/configmap.yaml no longer matches configs/config.yaml: copy the file into "
        "its data.config.yaml block"
    )
    spec = _load("deployment.yaml")["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if "configMap" in v)
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    mount = next(m for m in _container()["volumeMounts"] if m["name"] == volume["name"])
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    workdir = re.findall(r"^WORKDIR (\S+)", dockerfile, re.M)[-1]
    assert mount["mountPath"] == f"{workdir}/configs"


def test_service_and_hpa_target_the_deployment() -> None:
    deployment = _load("deployment.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = _load("service.yaml")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "http": HTTP_PORT,
        "grpc": GRPC_PORT,
        "ws": WS_PORT,
    }
    hpa = _load("hpa.yaml")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # CPU utilisation targets need CPU requests.
    assert _container()["resources"]["requests"]["cpu"]


def test_compose_has_the_stack_and_consistent_ports() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"app", "postgres", "redpanda", "rabbitmq", "otel-collector"}
    app = services["app"]
    assert app["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == (
        DEPLOY / "Dockerfile"
    )
    assert {f"{HTTP_PORT}:{HTTP_PORT}", f"{GRPC_PORT}:{GRPC_PORT}", f"{WS_PORT}:{WS_PORT}"} <= set(
        app["ports"]
    )
    grace = float(app["stop_grace_period"].removesuffix("s"))
    assert grace > STOP_TIMEOUT
    for volume in services["otel-collector"]["volumes"]:
        assert (DEPLOY / volume.split(":")[0]).exists()


def test_dockerfile_exposes_the_ports_and_runs_the_service() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    exposed = re.search(r"^EXPOSE (.+)$", dockerfile, re.M)
    assert exposed is not None
    assert set(exposed.group(1).split()) == {str(HTTP_PORT), str(GRPC_PORT), str(WS_PORT)}
    assert dockerfile.count("\nFROM ") == 2  # multi-stage
    cmd = re.findall(r"^CMD (.+)$", dockerfile, re.M)
    assert cmd == ['["python", "-m", "cmd.server", "-conf", "configs/"]']
    copied = re.search(r"cp -R (.+) /out/app/", dockerfile)
    assert copied is not None
    for part in shlex.split(copied.group(1)):
        assert (ROOT / part).is_dir(), part


def test_the_probed_paths_answer_on_the_service(tmp_path: Path) -> None:
    """Start the reference service on its config; the probes' paths answer 200 on HTTP."""
    http_port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        [PYTHON, "-m", "cmd.server", "-conf", "configs/"],
        cwd=ROOT,
        env=service_env(tmp_path, http_port, grpc_port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        container = _container()
        ready = f"http://127.0.0.1:{http_port}{container['readinessProbe']['httpGet']['path']}"
        wait_for(lambda: http_get(ready)[0] == 200, ready, alive=lambda: proc.poll() is None)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            path = container[probe]["httpGet"]["path"]
            assert http_get(f"http://127.0.0.1:{http_port}{path}")[0] == 200, probe
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_TIMEOUT + 10) == 0
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert "Traceback" not in err, err[-3000:]
