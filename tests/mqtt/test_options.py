"""MQTT broker options: checked when the config is scanned, and by create_broker."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from framework.broker import create_broker
from framework.broker.options_schema import validate_broker_options
from framework.transport.mqtt import MqttBroker

from app_template.conf.conf import BrokerConf


def test_create_broker_builds_the_mqtt_broker_from_config_values() -> None:
    broker = create_broker(
        "mqtt", url="mqtt://user:secret@mq.internal:1884", qos=2, client_id="orders-1"
    )
    assert isinstance(broker, MqttBroker)
    assert broker.qos == 2
    assert broker.client_id == "orders-1"
    assert broker.endpoint == "mqtt://user:***@mq.internal:1884"


def test_options_are_typed_and_checked_at_config_time() -> None:
    conf = BrokerConf(kind="mqtt", options={"qos": "0", "session_expiry": "60", "client_id": 7})
    assert conf.options == {"qos": 0, "session_expiry": 60, "client_id": "7"}
    cases = {
        "qos": (3, "qos must be an int between 0 and 2"),
        "receive_maximum": (0, "receive_maximum must be an int between 1 and 65535"),
        "url": ("amqp://h", "url must be a mqtt://"),
        "will_topic": ("alive/+", "will_topic: cannot publish"),
        "prefetch": (10, "'prefetch' is an option of the rabbitmq broker, not mqtt"),
    }
    for name, (value, message) in cases.items():
        with pytest.raises(ValidationError) as info:
            BrokerConf(kind="mqtt", options={name: value})
        assert message in str(info.value), name
    with pytest.raises(ValueError, match="will_qos must be an int between 0 and 2"):
        validate_broker_options("mqtt", {"will_qos": 5})
