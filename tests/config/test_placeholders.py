"""${VAR} and ${VAR:default} placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from framework.config import ConfigError, load


def cfg_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_is_text_like_a_set_value(tmp_path: Path) -> None:
    path = cfg_file(
        tmp_path,
        "port: ${PORT:8000}\ndebug: ${DEBUG:false}\nratio: ${R:0.5}\n"
        "name: ${NAME:svc}\nempty: ${E:}\n",
    )
    cfg = load(path, environ={})
    assert cfg.get() == {
        "port": "8000", "debug": "false", "ratio": "0.5", "name": "svc", "empty": ""
    }


# Issue 8 item 13: ``port_pin: "${PIN:0123}"`` was '0123' with PIN=0123 set but the int 83
# (YAML 1.1 octal) with PIN unset. Every YAML 1.1 surprise, in every quoting, both ways.
DEFAULTS = [
    "0123", "007", "8000", "-5", "+1", "1_000", "0x1F", "0o17", "0b101", "1:30",
    "1.5", ".5", "1e3", ".inf", ".nan",
    "yes", "no", "on", "off", "y", "n", "true", "False", "TRUE",
    "null", "Null", "~", "",
    "2024-01-01", "svc", "a b", "[1, 2]",
]


@pytest.mark.parametrize("quote", ["", '"', "'"], ids=["plain", "double", "single"])
@pytest.mark.parametrize("default", DEFAULTS)
def test_item13_default_reads_exactly_like_the_same_text_set(
    tmp_path: Path, default: str, quote: str
) -> None:
    path = cfg_file(tmp_path, f"value: {quote}${{V:{default}}}{quote}\n")
    unset = load(path, environ={}).get("value")
    set_to_default = load(path, environ={"V": default}).get("value")
    assert unset == set_to_default == default
    assert type(unset) is type(set_to_default) is str


class Typed(BaseModel):
    pin: str
    port: int
    flag: bool
    ratio: float
    name: str
    none: int | None = None


def test_item13_typed_scan_is_identical_set_or_unset(tmp_path: Path) -> None:
    path = cfg_file(
        tmp_path,
        'pin: "${PIN:0123}"\nport: ${PORT:08000}\nflag: ${FLAG:on}\nratio: ${R:1e3}\n'
        "name: '${NAME:null}'\n",
    )
    unset = load(path, environ={}).scan(Typed)
    env = {"PIN": "0123", "PORT": "08000", "FLAG": "on", "R": "1e3", "NAME": "null"}
    set_ = load(path, environ=env).scan(Typed)
    assert unset == set_ == Typed(pin="0123", port=8000, flag=True, ratio=1000.0, name="null")


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
