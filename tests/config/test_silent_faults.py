"""Config faults that used to pass silently: a key written twice in one file (the last one
won), a placeholder's variable left out of the error about its value, two env overrides of
the same key (one won by accident of spelling)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from framework.config import ConfigError, load


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "line", "key", "first"),
    [
        ("server:\n  http:\n    port: 1\n    host: x\n    port: 2\n", 5, "server.http.port", 3),
        ("a: 1\nb: 2\na: 3\n", 3, "a", 1),
        ("hosts:\n  - name: a\n    name: b\n", 3, "hosts[0].name", 2),
        ('codes:\n  1: one\n  "1": uno\n', 3, "codes.1", 2),  # both are the key "1"
    ],
)
def test_duplicate_yaml_key_names_file_path_and_both_lines(
    tmp_path: Path, text: str, line: int, key: str, first: int
) -> None:
    path = write(tmp_path / "config.yaml", text)
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: {key}: duplicate key, already at line {first}")


def test_duplicate_json_key_names_file_path_and_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", '{"log": {"level": "info",\n "level": "debug"}}')
    with pytest.raises(ConfigError, match=re.escape(f"{path}:2: log.level: duplicate key, "
                                                    "already at line 1")):
        load(path)


def test_merge_key_override_is_not_a_duplicate(tmp_path: Path) -> None:
    write(tmp_path / "c.yaml", "base: &b\n  port: 1\n  host: h\nhttp:\n  <<: *b\n  port: 2\n")
    assert load(tmp_path).get("http") == {"port": 2, "host": "h"}


def test_same_key_in_two_files_still_merges(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "port: 1\n")
    write(tmp_path / "b.yaml", "port: 2\n")
    assert load(tmp_path).get("port") == 2


class _Http(BaseModel):
    port: int


class _Root(BaseModel):
    http: _Http


def test_bad_value_from_a_placeholder_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "http:\n  port: ${HTTP_PORT:8000}\n")
    cfg = load(path, environ={"HTTP_PORT": "abc"})
    assert cfg.origin("http.port") == f"{path}:2 (env HTTP_PORT)"
    with pytest.raises(ConfigError) as info:
        cfg.scan(_Root)
    assert str(info.value).startswith(f"{path}:2 (env HTTP_PORT): http.port: ")
    assert "got 'abc'" in str(info.value)
    # The default used: no variable to name.
    assert load(path, environ={}).origin("http.port") == f"{path}:2"


def test_two_env_overrides_of_one_key_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "c.yaml", "log:\n  level: INFO\n")
    environ = {"APP_LOG__LEVEL": "DEBUG", "APP_log__level": "WARNING"}
    with pytest.raises(ConfigError, match=r"env APP_LOG__LEVEL and env APP_log__level both set "
                                          r"log\.level"):
        load(tmp_path, env_prefix="APP_", environ=environ)
    # A parent and its child are two keys, as before.
    both = {"APP_LOG": "null", "APP_LOG__LEVEL": "DEBUG"}
    assert load(tmp_path, env_prefix="APP_", environ=both).get("log.level") == "DEBUG"
