"""Broker options are validated at scan time against the selected kind (issue 8 item 12).

The tests walk every option of every kind, so an option added later is covered without
touching them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, ValidationError

from framework.broker import BROKER_KINDS, create_broker, factory
from framework.broker.options_schema import broker_options, validate_broker_options
from framework.config import ConfigError, load
from framework.config.model import ConfigModel

from app_template.conf.conf import Bootstrap


def errors_of(kind: str, options: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as info:
        validate_broker_options(kind, options)
    return [(error["loc"], error["msg"]) for error in info.value.errors()]


@pytest.mark.parametrize("kind", BROKER_KINDS)
def test_unknown_option_lists_every_valid_name(kind: str) -> None:
    names = sorted(option.name for option in broker_options(kind))
    assert names, f"{kind} declares no options"
    assert errors_of(kind, {"nope": 1}) == [
        (("nope",), f"unknown option 'nope'; valid: {', '.join(names)}")
    ]


@pytest.mark.parametrize("kind", BROKER_KINDS)
def test_every_option_is_type_checked_at_its_own_key(kind: str) -> None:
    # A list is the wrong type for every option (they are all scalars): each must be refused,
    # located at its own key, in one pass.
    options = {option.name: ["not", "a", "scalar"] for option in broker_options(kind)}
    located = {loc[0] for loc, _ in errors_of(kind, options)}
    assert located == set(options)


def test_near_miss_gets_a_guess() -> None:
    [(loc, message)] = errors_of("kafka", {"bootstrap_server": "h:9092"})
    assert loc == ("bootstrap_server",)
    assert message.startswith(
        "unknown option 'bootstrap_server' (did you mean 'bootstrap_servers'?); valid: acks, "
    )


def test_an_option_of_another_kind_says_which() -> None:
    [(_, message)] = errors_of("memory", {"bootstrap_servers": "h:9092"})
    assert message == (
        "unknown option 'bootstrap_servers'; valid: name, partitions; "
        "'bootstrap_servers' is an option of the kafka broker, not memory"
    )


def test_a_misspelt_option_of_another_kind_gets_a_guess_naming_it() -> None:
    # The issue's own example: kind left at memory, and the Kafka option misspelt.
    [(_, message)] = errors_of("memory", {"bootstrap_server": "h:9092"})
    assert message == (
        "unknown option 'bootstrap_server'; valid: name, partitions; "
        "did you mean 'bootstrap_servers', an option of the kafka broker?"
    )


def test_values_are_typed_like_every_config_value() -> None:
    # What env overrides and placeholders produce: strings and numbers.
    assert validate_broker_options("memory", {"partitions": "3", "name": 7}) == {
        "partitions": 3,
        "name": "7",
    }
    assert validate_broker_options(
        "rabbitmq", {"prefetch": "10", "mandatory": "false", "publish_timeout": "2.5"}
    ) == {"prefetch": 10, "mandatory": False, "publish_timeout": 2.5}
    assert validate_broker_options("kafka", {"auto_offset_reset": "latest"}) == {
        "auto_offset_reset": "latest"
    }
    [(loc, message)] = errors_of("kafka", {"auto_offset_reset": "newest"})
    assert loc == ("auto_offset_reset",) and "'earliest' or 'latest'" in message
    # acks takes a number or "all": a placeholder's "1" (text, set or default) means 1.
    assert validate_broker_options("kafka", {"acks": "1"}) == {"acks": "1"}
    assert create_broker("kafka", acks="1").options.acks == 1  # type: ignore[attr-defined]
    [(loc, message)] = errors_of("kafka", {"acks": 2})
    assert loc == ("acks",) and message == "acks must be one of none, leader, all, 0, 1, -1, got 2"


def test_the_brokers_own_checks_run_at_scan_time() -> None:
    assert errors_of("memory", {"partitions": 0}) == [
        (("partitions",), "MemoryBroker: partitions must be an int between 1 and 65536, got 0")
    ]
    [(loc, message)] = errors_of("kafka", {"heartbeat_interval_ms": 50_000})
    assert loc == ("heartbeat_interval_ms",) and "lower than session_timeout_ms" in message
    with pytest.raises(ValueError, match="exchange_type must be one of"):
        validate_broker_options("rabbitmq", {"exchange_type": "headers"})


def test_a_missing_client_library_is_an_error_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "fake_transport_mod.py").write_text("import definitely_missing_client\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(
        factory._REGISTRY,
        "fake",
        ("fake_transport_mod", "FakeBroker", "fake", ("definitely_missing_client",)),
    )
    with pytest.raises(ValueError, match=r"needs definitely_missing_client.*pykratos\[fake\]"):
        validate_broker_options("fake", {})


def test_create_broker_lists_the_valid_options() -> None:
    with pytest.raises(TypeError, match=r"unknown option 'nope'; valid: name, partitions$"):
        create_broker("memory", nope=1)


# -- through a config scan, as cmd.server does -------------------------------------------


def conf_dir(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "configs"
    d.mkdir()
    (d / "config.yaml").write_text(text, encoding="utf-8")
    return d


def test_scan_names_file_line_and_key_of_an_unknown_option(tmp_path: Path) -> None:
    d = conf_dir(tmp_path, "data:\n  broker:\n    kind: memory\n    options: {nope: 1}\n")
    with pytest.raises(ConfigError) as info:
        load(d, env_prefix="APP_", environ={}).scan(Bootstrap)
    assert str(info.value) == (
        f"{d / 'config.yaml'}:4: data.broker.options.nope: "
        "unknown option 'nope'; valid: name, partitions"
    )


def test_scan_names_the_env_var_of_an_unknown_option(tmp_path: Path) -> None:
    d = conf_dir(tmp_path, "data:\n  broker:\n    options: {}\n")
    environ = {
        "APP_DATA__BROKER__KIND": "kafka",
        "APP_DATA__BROKER__OPTIONS__BOOTSTRAP_SERVER": "kafka:9092",
    }
    with pytest.raises(ConfigError) as info:
        load(d, env_prefix="APP_", environ=environ).scan(Bootstrap)
    assert str(info.value).startswith(
        "env APP_DATA__BROKER__OPTIONS__BOOTSTRAP_SERVER: data.broker.options.bootstrap_server: "
        "unknown option 'bootstrap_server' (did you mean 'bootstrap_servers'?); valid: "
    )


def test_scan_types_env_options_and_checks_the_notifications_broker(tmp_path: Path) -> None:
    d = conf_dir(
        tmp_path,
        "data:\n  broker:\n    kind: kafka\n"
        "  notifications:\n    kind: rabbitmq\n    options:\n      prefech: 5\n",
    )
    environ = {"APP_DATA__BROKER__OPTIONS__MAX_RECORDS": "50"}
    with pytest.raises(ConfigError) as info:
        load(d, env_prefix="APP_", environ=environ).scan(Bootstrap)
    assert str(info.value).startswith(
        f"{d / 'config.yaml'}:7: data.notifications.options.prefech: "
        "unknown option 'prefech' (did you mean 'prefetch'?)"
    )
    (d / "config.yaml").write_text("data:\n  broker:\n    kind: kafka\n", encoding="utf-8")
    boot = load(d, env_prefix="APP_", environ=environ).scan(Bootstrap)
    assert boot.data.broker.options == {"max_records": 50}


# -- unknown keys of config sections -------------------------------------------------------


class Http(ConfigModel):
    host: str = "0.0.0.0"
    port: int = 8000


class Db(ConfigModel):
    schema_name: str | None = Field(default=None, alias="schema")


class Root(ConfigModel):
    http: Http = Http()
    db: Db = Db()


def test_unknown_section_key_lists_valid_keys_with_a_guess_and_keeps_other_errors(
    tmp_path: Path,
) -> None:
    d = conf_dir(tmp_path, "http:\n  prot: 1\n  port: x\ndb:\n  schema_name: s\nbogus: 1\n")
    with pytest.raises(ConfigError) as info:
        load(d, environ={}).scan(Root)
    where = d / "config.yaml"
    assert sorted(str(info.value).splitlines()) == [
        f"{where}:2: http.prot: unknown key 'prot' (did you mean 'port'?); valid: host, port",
        f"{where}:3: http.port: Input should be a valid integer, unable to parse string as "
        "an integer, got 'x'",
        f"{where}:5: db.schema_name: unknown key 'schema_name' (did you mean 'schema'?); "
        "valid: schema",
        f"{where}:6: bogus: unknown key 'bogus'; valid: db, http",
    ]


# -- every broker's address option is checked for scheme and shape at config time -----------

#: kind -> (address option, accepted values, refused values)
ADDRESS_CASES: dict[str, tuple[str, list[str], list[str]]] = {
    "redis": (
        "url",
        ["redis://broker.example:6379/0", "rediss://:pw@cache:6380", "unix:///run/redis.sock"],
        [
            "http://broker.example:6379",
            "broker.example:6379",
            "redis://",
            "redis://h:notaport",
            "unix://",
        ],
    ),
    "rabbitmq": (
        "url",
        ["amqp://guest:guest@broker.example:5672/", "amqps://mq:5671/vhost"],
        ["http://broker.example:5672", "redis://h:5672", "amqp://", "amqp://h:99999/"],
    ),
    "mqtt": (
        "url",
        ["mqtt://broker.example:1883", "mqtts://broker:8883", "tcp://h:1883"],
        ["http://broker.example:1883", "mqtt://", "broker.example:1883", "mqtt://h:x"],
    ),
    "nats": (
        "servers",
        ["nats://broker.example:4222", "nats://a:4222, tls://b:4222", "ws://h:8080"],
        ["http://broker.example:4222", "nats://a:4222,http://b:4222", "", " , ", "nats://h:0"],
    ),
    "kafka": (
        "bootstrap_servers",
        ["broker.example:9092", "a:9092, b:9093", "[::1]:9092"],
        ["http://127.0.0.1:9092", "127.0.0.1", "a:9092,b", "", "h:port", "h:70000", "a/b:1"],
    ),
}


@pytest.mark.parametrize("kind", list(ADDRESS_CASES))
def test_every_kind_refuses_a_malformed_address_at_its_own_key(kind: str) -> None:
    assert set(ADDRESS_CASES) == set(BROKER_KINDS) - {"memory"}  # every kind with an address
    option, good, bad = ADDRESS_CASES[kind]
    for value in good:
        assert validate_broker_options(kind, {option: value}) == {option: value}
        create_broker(kind, **{option: value})  # construction agrees (and does no I/O)
    for value in bad:
        [(loc, message)] = errors_of(kind, {option: value})
        assert loc == (option,), (value, message)
        assert message.startswith(f"{option} must be"), (value, message)
        assert ", got " in message  # the value (or its refused entry) is quoted
        with pytest.raises(ValueError, match=rf"^{option} must be"):
            create_broker(kind, **{option: value})


@pytest.mark.parametrize(
    ("kind", "option"),
    [
        ("kafka", "publish_timeout"),
        ("rabbitmq", "publish_timeout"),
        ("nats", "ack_wait"),
        ("redis", "publish_timeout"),
    ],
)
@pytest.mark.parametrize("value", ["nan", "inf", float("nan")])
def test_a_float_option_that_is_not_finite_is_refused_at_its_key(
    kind: str, option: str, value: Any
) -> None:
    # A NaN passed every range check of the brokers (nan <= 0 is false) and was kept.
    with pytest.raises(ValidationError, match=rf"{option}\n.*finite number"):
        validate_broker_options(kind, {option: value})
