"""``pykratos new``: names, targets, and what the scaffolded project contains."""

from __future__ import annotations

import ast
import os
import re
import resource
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from framework.cli.exceptions import CliError
from framework.cli.main import main
from framework.cli.manifest import iter_template_files
from framework.cli.names import project_names
from framework.cli.project_files import DEFAULT_MARK_EXPRESSION, PYTEST_MARKERS
from framework.cli.scaffold import new_project
from framework.cli.template import template_root
from tests.cli.conftest import PYTHON, ROOT, check_lint_and_types


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("1svc", "identifier"),
        ("Order", "lowercase"),
        ("order svc", "identifier"),
        ("order.svc", "identifier"),
        ("ordér", "identifier"),
        ("svc_", "identifier"),
        ("a__b", "identifier"),
        ("class", "keyword"),
        ("match", "keyword"),
        ("json", "standard library"),
        ("asyncio", "standard library"),
        ("cmd", "standard library"),
        ("framework", "reserved"),
        ("app-template", "reserved"),
        ("tests", "reserved"),
        ("pydantic", "already importable"),
        ("grpc", "already importable"),
    ],
)
def test_invalid_names_are_refused_with_exit_2(
    name: str, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["new", name, "--dir", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("pykratos: error: ")
    assert why in err
    assert not (tmp_path / "out").exists()


def test_name_spellings() -> None:
    names = project_names("order-svc")
    assert (names.raw, names.package, names.dns, names.env, names.title) == (
        "order-svc",
        "order_svc",
        "order-svc",
        "ORDER_SVC",
        "Order Svc",
    )


def test_non_empty_target_is_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    assert main(["new", "busy-svc", "--dir", str(target)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["busy"]  # no staging directory left


def test_target_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CliError, match="not a directory"):
        new_project("file-svc", tmp_path / "file")


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("pykratos: error: cannot create the project in ")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    return captured.err


def test_a_name_too_long_for_the_file_system_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    name = "x" + "y" * 300
    assert main(["new", name]) == 2
    err = _one_line_error(capsys)
    assert "File name too long" in err and name in err
    assert list(tmp_path.iterdir()) == []


def test_a_file_on_the_target_path_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["new", "deep-svc", "--dir", str(tmp_path / "file" / "deep-svc")]) == 2
    assert f"File exists: {tmp_path / 'file'}" in _one_line_error(capsys)
    assert main(["new", "file-svc", "--dir", str(tmp_path / "file")]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_permission_denied_is_a_usage_error_and_a_full_disk_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    import framework.cli.scaffold as scaffold

    # The tests run as root, whom mode bits do not stop: raise what the OS would.
    def refuse(**kwargs: object) -> str:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    with monkeypatch.context() as patch:
        patch.setattr(scaffold.tempfile, "mkdtemp", refuse)
        assert main(["new", "locked-svc", "--dir", str(tmp_path / "locked")]) == 2
    assert f"Permission denied: {tmp_path}" in _one_line_error(capsys)

    def disk_full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "somewhere/x.py")

    monkeypatch.setattr(scaffold, "_copy_template", disk_full)
    assert main(["new", "full-svc", "--dir", str(tmp_path / "full")]) == 1
    assert "No space left on device: somewhere/x.py" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []  # the staging directory was removed


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("new") / "shop-api"
    target.mkdir()  # an existing empty directory is accepted
    new_project("shop-api", target)
    return target


def test_default_target_is_name_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new", "cart-svc"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "cart-svc" / "cart_svc" / "wire.py").is_file()
    assert "python -m pytest" in out and "python -m cmd.server -conf configs/" in out
    assert oct((tmp_path / "cart-svc").stat().st_mode & 0o777) != oct(0o700)


def test_every_template_file_is_copied_and_renamed(project: Path) -> None:
    template = template_root()
    for relative in iter_template_files(template):
        renamed = Path(*("shop_api" if p == "app_template" else p for p in relative.parts))
        assert (project / renamed).is_file(), renamed
    for extra in ("pyproject.toml", "README.md", ".gitignore"):
        assert (project / extra).is_file()
    assert (project / "tests" / "shop_api").is_dir()
    assert (project / "cmd" / "__init__.py").read_text() == (ROOT / "cmd/__init__.py").read_text()
    leftovers = [
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_file()
        and any(
            old in path.read_text(errors="replace") or old in str(path)
            for old in ("app_template", "app-template", "app__template")
        )
    ]
    assert leftovers == []


def test_python_files_parse_and_import_the_new_package(project: Path) -> None:
    for path in project.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("app_template")
    wire = (project / "shop_api" / "wire.py").read_text()
    assert "from shop_api.conf.conf import Bootstrap" in wire


def test_generated_descriptor_names_the_new_proto_path(project: Path) -> None:
    code = (
        "from shop_api.api.order.v1 import order_pb2, order_pb2_grpc;"
        "print(order_pb2.DESCRIPTOR.name)"
    )
    done = subprocess.run(
        [PYTHON, "-c", code], cwd=project, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "shop_api/api/order/v1/order.proto"


def test_pyproject_readme_gitignore(project: Path) -> None:
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "shop-api"
    assert meta["project"]["dependencies"] == ["pykratos[all]>=0.1.0"]
    assert meta["tool"]["setuptools"]["packages"]["find"]["include"] == ["shop_api*"]
    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    theirs = meta["tool"]["pytest"]["ini_options"]
    assert theirs["asyncio_mode"] == ours["asyncio_mode"]
    # The template's tests may use any marker the repository declares, and the project's plain
    # `pytest` leaves out those the repository's CI runs on the real services.
    assert theirs["markers"] == ours["markers"] == [f"{n}: {text}" for n, text in PYTEST_MARKERS]
    assert theirs["addopts"] == f'-m "{DEFAULT_MARK_EXPRESSION}"' and "addopts" not in ours
    readme = (project / "README.md").read_text().splitlines()
    commands = [line for line in readme if line.startswith("python3 -m venv .venv")]
    # The first two code lines are set-up+run and set-up+test, before any other section.
    assert len(commands) == 2
    assert commands[0].endswith(".venv/bin/python -m cmd.server -conf configs/")
    assert commands[1].endswith(".venv/bin/python -m pytest")
    first_section = next(i for i, line in enumerate(readme) if line.startswith("## "))
    assert readme.index(commands[1]) < first_section
    assert "pykratos[all] @ file://" in commands[0]  # installed from where pykratos came from
    assert ".venv/" in (project / ".gitignore").read_text()


def test_deploy_is_renamed_and_dockerfile_installs_the_project(project: Path) -> None:
    dockerfile = (project / "deploy" / "Dockerfile").read_text()
    assert 'ARG INSTALL="."' in dockerfile
    assert "cp -R shop_api cmd configs" in dockerfile
    deployment = yaml.safe_load((project / "deploy/k8s/deployment.yaml").read_text())
    assert deployment["metadata"]["name"] == "shop-api"
    configmap = yaml.safe_load((project / "deploy/k8s/configmap.yaml").read_text())
    assert yaml.safe_load(configmap["data"]["config.yaml"]) == yaml.safe_load(
        (project / "configs" / "config.yaml").read_text()
    )


def _offline_prefix() -> list[str]:
    """A command prefix running in a network namespace of its own, only loopback up (empty
    where unprivileged user namespaces are not allowed)."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        return []
    probe = subprocess.run([unshare, "-rn", ip, "link", "set", "lo", "up"],
                           capture_output=True, check=False)  # fmt: skip
    if probe.returncode != 0:
        return []
    return [unshare, "-rn", "sh", "-c", f'{ip} link set lo up && exec "$@"', "sh"]


def _scaffold_pytest(
    project: Path, *args: str, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m pytest -q ARGS`` in ``project``, with this environment's packages and this
    tree's framework (a directory holding only a link to it, so the repository's own tests and
    cmd packages stay out of the project's way). The fresh-virtualenv run is in test_slow."""
    only_framework = project.parent / f".{project.name}-pythonpath"
    only_framework.mkdir(exist_ok=True)
    if not (only_framework / "framework").exists():
        (only_framework / "framework").symlink_to(ROOT / "framework", target_is_directory=True)
    return subprocess.run(
        [*prefix, PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(only_framework)},
        timeout=600,
        check=False,
    )


def _count(summary: str, what: str) -> int:
    found = re.search(rf"(\d+) {what}", summary)
    return int(found.group(1)) if found else 0


def _collected(done: subprocess.CompletedProcess[str]) -> int:
    """Tests selected by a ``--collect-only -q`` run ("N tests collected" or "N/ALL ...")."""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = re.search(r"(\d+)(?:/\d+)? tests? collected", done.stdout.strip().splitlines()[-1])
    assert found, done.stdout[-500:]
    return int(found.group(1))


def test_scaffolded_default_run_is_offline_and_fast(project: Path) -> None:
    """The project's plain ``pytest`` runs the in-process tests only, offline, in seconds.

    It runs in a network namespace with only loopback (where the kernel lets us make one), so
    none of this machine's services is reachable, with ``PYKRATOS_REQUIRE_SERVICES=1``: a test
    that needed one would fail instead of skipping. The tests it leaves out are exactly those
    marked ``services`` or ``slow``. The issue's budget is 10 s for the whole run; wall time
    on a shared 2-core machine varies with the load, so the assertion is on the CPU time the
    run used (user + system, all processes), and the wall time is printed.
    """
    prefix = _offline_prefix()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = _scaffold_pytest(
        project, prefix=tuple(prefix), env={"PYKRATOS_REQUIRE_SERVICES": "1"}
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    print(f"offline={bool(prefix)} wall={wall:.1f}s cpu={cpu:.1f}s: {summary}")
    assert _count(summary, "skipped") == 0, summary  # nothing wanted a missing service
    passed, deselected = _count(summary, "passed"), _count(summary, "deselected")
    marked = _scaffold_pytest(project, "--collect-only", "-m", "services or slow")
    assert deselected == _collected(marked) and deselected > 0 and passed > 0
    kit = _scaffold_pytest(project, "--collect-only", "tests/shop_api/test_kit.py")
    assert "deselected" not in kit.stdout and _collected(kit) >= 4  # the kit tests all run
    assert cpu < 10.0, f"the default run used {cpu:.1f}s of CPU (wall {wall:.1f}s)"


@pytest.mark.slow
def test_scaffolded_service_and_slow_tests_pass(project: Path) -> None:
    """What the default run leaves out still passes in the project: its service on the real
    PostgreSQL and brokers (skipped when unreachable, failing in CI), its subprocess tests."""
    done = _scaffold_pytest(project, "-m", "services or slow")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout


@pytest.mark.parametrize(
    "name",
    [
        "a_svc",  # sorts before "tests" and "framework"
        pytest.param("zeta", marks=pytest.mark.slow),  # sorts after both
        pytest.param("orders", marks=pytest.mark.slow),  # between them
    ],
)
def test_scaffold_is_ruff_and_mypy_strict_clean(name: str, tmp_path: Path) -> None:
    """Item 22: a new project passes its own ``ruff check`` and ``mypy --strict`` as made.

    Import order must not depend on the package name (the service package has an isort
    section of its own, in the repository and in projects) and generated protobuf code must not
    fail strict mypy (typed ``x_pb2_grpc.pyi``, ``x_pb2.pyi`` marked as generated).
    """
    project = tmp_path / name
    new_project(name, project)
    config = tomllib.loads((project / "pyproject.toml").read_text())
    assert config["tool"]["mypy"]["strict"] is True
    assert config["tool"]["mypy"]["files"] == [name, "cmd", "tests"]
    check_lint_and_types(project)  # `mypy` alone: the files come from pyproject.toml
