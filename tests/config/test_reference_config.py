"""The reference service's config: every value is checked when it is scanned (issue 8 item 12),
not when the service is built from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from framework.config import ConfigError, ConfigModel, load

from app_template.conf.conf import Bootstrap


def test_every_section_of_the_reference_config_refuses_unknown_keys() -> None:
    # A section added later on a plain BaseModel would silently ignore a misspelt key.
    seen: set[type] = set()

    def visit(model: type) -> None:
        if model in seen:
            return
        seen.add(model)
        assert issubclass(model, ConfigModel), f"{model.__name__} is not a ConfigModel"
        for field in model.model_fields.values():
            for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    visit(arg)

    visit(Bootstrap)
    assert len(seen) > 5


def scan_with(tmp_path: Path, **environ: str) -> Bootstrap:
    (tmp_path / "config.yaml").write_text("app:\n  name: t\n", encoding="utf-8")
    return load(tmp_path / "config.yaml", env_prefix="APP_", environ=environ).scan(Bootstrap)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("nope", "not a database URL; expected e.g. sqlite+aiosqlite:///orders.db"),
        ("foo+bar://h/db", "unknown database dialect or driver"),
        ("postgresql://u@h/db", "postgresql is not an async driver"),
        ("sqlite:///orders.db", "sqlite is not an async driver"),
    ],
)
def test_database_url_is_checked_at_scan_time(tmp_path: Path, url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        scan_with(tmp_path, APP_DATA__DATABASE__URL=url)
    assert str(info.value).startswith(
        f"env APP_DATA__DATABASE__URL: data.database.url: Value error, {problem}"
    )


def test_accepted_database_urls(tmp_path: Path) -> None:
    for url in ("sqlite+aiosqlite:///orders.db", "postgresql+asyncpg://u:p@db.example:5432/test"):
        assert scan_with(tmp_path, APP_DATA__DATABASE__URL=url).data.database.url == url


def test_a_refused_url_does_not_echo_its_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        scan_with(tmp_path, APP_DATA__DATABASE__URL="postgresql://app:s3cret@db:5432/orders")
    assert "s3cret" not in str(info.value)
    assert str(info.value).endswith("got 'postgresql://app:***@db:5432/orders'")


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400"])
@pytest.mark.parametrize(
    "key",
    [
        "SERVER__HTTP__TIMEOUT",
        "SERVER__HTTP__HEADER_TIMEOUT",
        "DATA__OUTBOX__RETENTION",
        "RATELIMIT__CPU_THRESHOLD",
    ],
)
def test_a_float_that_is_not_finite_is_refused_at_its_key(
    tmp_path: Path, key: str, value: str
) -> None:
    # server.http.timeout: .inf passed gt=0 and then every request failed with a 500.
    with pytest.raises(ConfigError, match=rf"env APP_{key}: .*finite number"):
        scan_with(tmp_path, **{f"APP_{key}": value})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        # was accepted, then every outbox clean-up logged OverflowError
        ({"APP_DATA__OUTBOX__RETENTION": "1e30"}, "less than or equal to 1000000000"),
        ({"APP_DATA__OUTBOX__MAX_BACKOFF": "1e30"}, "less than or equal to 1000000000"),
        (
            {"APP_DATA__BROKER__KIND": "redis", "APP_DATA__BROKER__OPTIONS__MINID_AGE": "1e30"},
            "RedisOptions: minid_age must be a finite number of seconds > 0 and <= 1000000000",
        ),
        # was accepted, then the App failed at start with pamqp's short range
        (
            {"APP_DATA__BROKER__KIND": "rabbitmq", "APP_DATA__BROKER__OPTIONS__PREFETCH": "70000"},
            "RabbitBroker: prefetch must be an int between 1 and 65535, got 70000",
        ),
        (
            {"APP_DATA__BROKER__KIND": "kafka", "APP_DATA__BROKER__OPTIONS__LINGER_MS": "-1"},
            "KafkaOptions: linger_ms must be an int between 0 and 2147483647, got -1",
        ),
    ],
)
def test_a_number_out_of_range_is_refused_at_its_key(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    [(variable, _)] = [item for item in environ.items() if "KIND" not in item[0]]
    with pytest.raises(ConfigError, match=rf"env {variable}: .*{re.escape(message)}"):
        scan_with(tmp_path, **environ)


@pytest.mark.parametrize(
    "environ",
    [
        {"APP_DATA__BROKER__KIND": "kafka", "APP_DATA__BROKER__OPTIONS__ACKS": "none"},
        {
            "APP_DATA__BROKER__KIND": "rabbitmq",
            "APP_DATA__BROKER__OPTIONS__PUBLISHER_CONFIRMS": "false",
        },
        {"APP_DATA__NOTIFICATIONS__KIND": "mqtt", "APP_DATA__NOTIFICATIONS__OPTIONS__QOS": "0"},
    ],
)
def test_an_outbox_on_a_fire_and_forget_broker_is_a_config_error(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    # It was the relay's ValueError, a traceback at wiring instead of one config line.
    with pytest.raises(ConfigError, match=r"data\.(outbox|notifications): .*acks 'none'"):
        scan_with(tmp_path, **environ)
    # without the outbox, fire-and-forget is the user's choice
    scan_with(tmp_path, APP_DATA__OUTBOX__ENABLED="false", **environ)
