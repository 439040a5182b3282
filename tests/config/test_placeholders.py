"""${VAR} and ${VAR:default} placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from framework.config import ConfigError, load


def cfg_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_keeps_its_yaml_type_when_unset(tmp_path: Path) -> None:
    path = cfg_file(
        tmp_path,
        "port: ${PORT:8000}\ndebug: ${DEBUG:false}\nratio: ${R:0.5}\n"
        "name: ${NAME:svc}\nempty: ${E:}\n",
    )
    cfg = load(path, environ={})
    assert cfg.get() == {"port": 8000, "debug": False, "ratio": 0.5, "name": "svc", "empty": ""}


def test_env_value_wins_as_a_string(tmp_path: Path) -> None:
    path = cfg_file(tmp_path, "port: ${PORT:8000}\ndsn: ${DSN}\n")
    cfg = load(path, environ={"PORT": "9000", "DSN": "postgres://u:p@h/db"})
    assert cfg.get("port") == "9000"
    assert cfg.get("dsn") == "postgres://u:p@h/db"


def test_placeholders_inside_strings_and_lists(tmp_path: Path) -> None:
    path = cfg_file(
        tmp_path, 'url: "http://${HOST:localhost}:${PORT:80}/v1"\nhosts: ["${H1}", b]\n'
    )
    cfg = load(path, environ={"PORT": "8080", "H1": "a"})
    assert cfg.get("url") == "http://localhost:8080/v1"
    assert cfg.get("hosts") == ["a", "b"]


def test_escape_gives_a_literal(tmp_path: Path) -> None:
    path = cfg_file(tmp_path, "tpl: $${NOT_A_VAR}\nprice: 5$$\n")
    assert load(path, environ={}).get() == {"tpl": "${NOT_A_VAR}", "price": "5$$"}


def test_unset_variable_without_default_names_file_line_and_key(tmp_path: Path) -> None:
    path = cfg_file(tmp_path, "db:\n  primary:\n    password: ${DB_PASSWORD}\n")
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert str(info.value) == (
        f"{path}:3: db.primary.password: environment variable DB_PASSWORD is not set "
        "and ${DB_PASSWORD} has no default"
    )


def test_unset_variable_in_a_list_item(tmp_path: Path) -> None:
    path = cfg_file(tmp_path, "hosts:\n  - a\n  - ${H2}\n")
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(path))}:3: hosts\[1\]: environment variable H2"
    ):
        load(path, environ={})


def test_overridden_value_is_not_resolved(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("secret: ${SECRET}\n")
    (tmp_path / "b.yaml").write_text("secret: fixed\n")
    assert load(tmp_path, environ={}).get("secret") == "fixed"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${PORT-80}", "malformed placeholder ${PORT-80}"),
        ("x ${OPEN", "unclosed placeholder"),
        ("${A:${B}}", "nested placeholders are not supported"),
    ],
)
def test_malformed_placeholders_are_reported(tmp_path: Path, value: str, expected: str) -> None:
    path = cfg_file(tmp_path, f"key: '{value}'\n")
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert str(info.value).startswith(f"{path}:1: key: ")
    assert expected in str(info.value)
