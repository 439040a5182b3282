"""Sources: files, directories, merge order, parse errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from framework.config import ConfigError, load


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_directory_merges_in_name_order_later_wins(tmp_path: Path) -> None:
    write(tmp_path / "20-override.yaml", "server:\n  http:\n    port: 9000\n")
    write(tmp_path / "10-base.yaml", "server:\n  http:\n    port: 8000\n    host: 0.0.0.0\n")
    write(tmp_path / "30-more.yml", "server:\n  http:\n    port: 9500\nname: svc\n")
    cfg = load(tmp_path)
    assert cfg.get("server.http") == {"port": 9500, "host": "0.0.0.0"}
    assert cfg.get("name") == "svc"
    assert cfg.origin("server.http.port") == f"{tmp_path / '30-more.yml'}:3"
    assert cfg.origin("server.http.host") == f"{tmp_path / '10-base.yaml'}:4"


def test_json_and_yaml_mix_lists_are_replaced(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "brokers: [k1, k2, k3]\nlog:\n  level: info\n  format: json\n")
    write(tmp_path / "b.json", '{"brokers": ["k9"], "log": {"level": "debug"}}')
    cfg = load(tmp_path)
    assert cfg.get("brokers") == ["k9"]
    assert cfg.get("log") == {"level": "debug", "format": "json"}
    assert cfg.origin("log.level") == f"{tmp_path / 'b.json'}:1"
    assert cfg.origin("log.format") == f"{tmp_path / 'a.yaml'}:4"


def test_other_files_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "x: 1\n")
    write(tmp_path / ".a.yaml", "x: 2\n")  # editor backup
    write(tmp_path / "notes.txt", "x: 3\n")
    (tmp_path / "sub.yaml").mkdir()
    assert load(tmp_path).get("x") == 1


def test_single_file_source(tmp_path: Path) -> None:
    path = write(tmp_path / "config.yaml", "a:\n  b: [1, 2]\n")
    cfg = load(path)
    assert cfg.get("a.b.1") == 2
    assert cfg.get("a.b.5", "dflt") == "dflt"
    assert cfg.get() == {"a": {"b": [1, 2]}}


def test_get_returns_a_copy(tmp_path: Path) -> None:
    cfg = load(write(tmp_path / "c.yaml", "a: {b: [1]}\n"))
    cfg.get("a")["b"].append(2)
    assert cfg.get("a.b") == [1]


def test_missing_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=re.escape(f"config path {missing} does not exist")):
        load(missing)


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no \.yaml/\.yml/\.json files"):
        load(tmp_path)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "ok: 1\n")
    bad = write(tmp_path / "b.yaml", "server:\n  http:\n    port: 8000\n   host: x\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert str(info.value).startswith(f"{bad}:4:")
    assert "invalid YAML" in str(info.value)


def test_json_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path / "a.json", '{\n  "a": 1,\n}\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(bad))}:3:1: invalid JSON"):
        load(tmp_path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    bad = write(tmp_path / "a.yaml", "- 1\n- 2\n")
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(bad))}: top level must be a mapping, got list"
    ):
        load(bad)


def test_empty_file_contributes_nothing(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "x: 1\n")
    write(tmp_path / "b.yaml", "# only a comment\n")
    assert load(tmp_path).get() == {"x": 1}


def test_keys_are_strings_and_merge_keys_work(tmp_path: Path) -> None:
    cfg = load(
        write(
            tmp_path / "a.yaml",
            "base: &base {timeout: 5, retries: 2}\n"
            "svc:\n  <<: *base\n  retries: 3\ncodes: {1: one}\n",
        )
    )
    assert cfg.get("svc") == {"timeout": 5, "retries": 3}
    assert cfg.get("codes") == {"1": "one"}
