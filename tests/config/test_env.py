"""Environment overrides with a prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.config import ConfigError, load


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(
        "server:\n  http:\n    port: 8000\n    maxConns: 10\n  grpc:\nhosts: [a, b]\n",
        encoding="utf-8",
    )
    return p


def test_override_nested_key_with_yaml_scalar(path: Path) -> None:
    cfg = load(path, env_prefix="APP_", environ={"APP_SERVER__HTTP__PORT": "9000"})
    assert cfg.get("server.http.port") == 9000
    assert cfg.origin("server.http.port") == "env APP_SERVER__HTTP__PORT"
    assert cfg.origin("server.http.maxConns") == f"{path}:4"


def test_keys_match_case_insensitively_and_new_keys_are_created(path: Path) -> None:
    environ = {
        "APP_SERVER__HTTP__MAXCONNS": "20",
        "APP_SERVER__GRPC__PORT": "9001",  # ``grpc:`` is empty (null) in the file
        "APP_LOG__LEVEL": "debug",
        "APP_FEATURES__ON": "true",
        "APP_HOSTS__1": "c",
        "OTHER_SERVER__HTTP__PORT": "1",
    }
    cfg = load(path, env_prefix="APP", environ=environ)
    assert cfg.get("server") == {
        "http": {"port": 8000, "maxConns": 20},
        "grpc": {"port": 9001},
    }
    assert cfg.get("log") == {"level": "debug"}
    assert cfg.get("features.on") is True
    assert cfg.get("hosts") == ["a", "c"]


def test_only_plain_scalars_are_converted(path: Path) -> None:
    environ = {
        "APP_A": "x: y",
        "APP_B": "",
        "APP_C": "[1, 2",
        "APP_D": "0123",  # YAML 1.1 would make this octal 83
        "APP_E": "on",  # ...and this True
        "APP_F": "1.5",
        "APP_G": "null",
        "APP_H": "False",
    }
    cfg = load(path, env_prefix="APP_", environ=environ)
    got = [cfg.get(k) for k in "abcdefgh"]
    assert got == ["x: y", "", "[1, 2", "0123", "on", 1.5, None, False]


def test_a_string_in_the_file_stays_a_string(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("db:\n  password: changeme\n  port: 5432\n")
    environ = {"APP_DB__PASSWORD": "12345", "APP_DB__PORT": "6543"}
    cfg = load(p, env_prefix="APP_", environ=environ)
    assert cfg.get("db") == {"password": "12345", "port": 6543}


def test_parent_applies_before_child(path: Path) -> None:
    environ = {"APP_SERVER__HTTP__PORT": "1", "APP_SERVER": "~"}
    cfg = load(path, env_prefix="APP_", environ=environ)
    assert cfg.get("server") == {"http": {"port": 1}}


def test_no_prefix_means_no_overrides(path: Path) -> None:
    cfg = load(path, environ={"SERVER__HTTP__PORT": "1"})
    assert cfg.get("server.http.port") == 8000


def test_override_through_a_scalar_is_an_error(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(path, env_prefix="APP_", environ={"APP_SERVER__HTTP__PORT__X": "1"})
    assert str(info.value) == (
        f"env APP_SERVER__HTTP__PORT__X: cannot set server.http.port.x: "
        f"server.http.port is a scalar of type int (from {path}:3)"
    )


def test_list_index_out_of_range_is_an_error(path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^env APP_HOSTS__5: cannot set hosts\.5: hosts is a list of 2 items"
    ):
        load(path, env_prefix="APP_", environ={"APP_HOSTS__5": "z"})


def test_empty_segment_is_an_error(path: Path) -> None:
    with pytest.raises(ConfigError, match="env APP_SERVER____PORT: empty key segment"):
        load(path, env_prefix="APP_", environ={"APP_SERVER____PORT": "1"})


def test_os_environ_is_the_default(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYKRATOS_TEST_SERVER__HTTP__PORT", "7000")
    assert load(path, env_prefix="PYKRATOS_TEST_").get("server.http.port") == 7000
