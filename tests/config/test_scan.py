"""Typed scanning: pydantic validation errors name the file (or env var) and the key."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from framework.config import ConfigError, load


class Http(BaseModel):
    host: str = "0.0.0.0"
    port: int
    timeout: float = 1.0


class Server(BaseModel):
    http: Http


class Log(BaseModel):
    level: str = "info"


class Bootstrap(BaseModel):
    server: Server
    log: Log = Log()


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    d = tmp_path / "configs"
    d.mkdir()
    (d / "config.yaml").write_text(
        "server:\n  http:\n    port: ${PORT:8000}\n    timeout: 2\nlog:\n  level: warn\n",
        encoding="utf-8",
    )
    return d


def test_scan_bootstrap_like_the_reference_service(confdir: Path) -> None:
    cfg = load(confdir, env_prefix="APP_", environ={"APP_SERVER__HTTP__HOST": "127.0.0.1"})
    boot = cfg.scan(Bootstrap)
    assert boot == Bootstrap(
        server=Server(http=Http(host="127.0.0.1", port=8000, timeout=2.0)), log=Log(level="warn")
    )


def test_env_string_from_placeholder_is_coerced(confdir: Path) -> None:
    assert load(confdir, environ={"PORT": "9000"}).scan(Bootstrap).server.http.port == 9000


def test_validation_error_names_file_line_and_key(confdir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(confdir, environ={"PORT": "abc"}).scan(Bootstrap)
    assert str(info.value) == (
        f"{confdir / 'config.yaml'}:3 (env PORT): server.http.port: "
        "Input should be a valid integer, unable to parse string as an integer, got 'abc'"
    )


def test_validation_error_names_env_origin(confdir: Path) -> None:
    cfg = load(confdir, env_prefix="APP_", environ={"APP_SERVER__HTTP__PORT": "abc"})
    with pytest.raises(ConfigError, match=r"^env APP_SERVER__HTTP__PORT: server\.http\.port: "):
        cfg.scan(Bootstrap)


def test_missing_field_points_at_its_parent_and_all_errors_are_listed(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("server:\n  http:\n    timeout: x\n")
    (tmp_path / "b.yaml").write_text("log:\n  level: [1]\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path).scan(Bootstrap)
    assert str(info.value).splitlines() == [
        f"{tmp_path / 'a.yaml'}:2: server.http.port: Field required",
        f"{tmp_path / 'a.yaml'}:3: server.http.timeout: "
        "Input should be a valid number, unable to parse string as a number, got 'x'",
        f"{tmp_path / 'b.yaml'}:2: log.level: Input should be a valid string",
    ]


def test_missing_top_level_section_names_the_source(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("log: {}\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path))}: server: Field required$"):
        load(tmp_path).scan(Bootstrap)


def test_value_scans_a_subtree(confdir: Path) -> None:
    cfg = load(confdir, environ={})
    assert cfg.value("server.http", Http) == Http(port=8000, timeout=2.0)
    assert cfg.value("server.http.port", int) == 8000


def test_value_errors_use_the_full_key(confdir: Path) -> None:
    cfg = load(confdir, environ={"PORT": "-"})
    with pytest.raises(ConfigError, match=r"config\.yaml:3 \(env PORT\): server\.http\.port: "):
        cfg.value("server.http", Http)


def test_value_of_a_missing_key(confdir: Path) -> None:
    cfg = load(confdir, environ={})
    with pytest.raises(ConfigError, match=r"config\.yaml:2: server\.http\.tls: key not found$"):
        cfg.value("server.http.tls", Http)


@dataclass
class Upstream:
    url: str
    weight: int = 1


def test_lists_of_dataclasses_report_the_index(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("upstreams:\n  - url: http://a\n  - url: http://b\n    weight: heavy\n")
    cfg = load(p)
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(p))}:4: upstreams\[1\]\.weight: Input should"
    ):
        cfg.value("upstreams", list[Upstream])
    assert cfg.value("upstreams.0", Upstream) == Upstream("http://a")
