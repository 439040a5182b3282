"""A consumer process that takes MQTT messages and never finishes them, to be SIGKILLed.

``python -m tests.mqtt.crashing_consumer URL CLIENT_ID TOPIC GROUP`` subscribes (QoS 1,
shared group GROUP, sessions of CLIENT_ID), prints ``ready``, then prints ``got <body>``
for every message its handler starts; the handler then blocks forever, so nothing is
acknowledged. With ``--will TOPIC`` it only connects a broker with that last will.
"""

from __future__ import annotations

import asyncio
import sys

from framework.broker import BrokerServer, Message, Router
from framework.transport.mqtt import MqttBroker


async def consume(url: str, client_id: str, topic: str, group: str) -> None:
    router = Router()

    # name= pins the session identity, so the in-process restart resumes this session.
    @router.subscriber(topic, group=group, name="crash-consumer")
    async def stuck(message: Message) -> None:
        print("got", message.body.decode(), flush=True)
        await asyncio.Event().wait()

    server = BrokerServer(MqttBroker(url, client_id=client_id), [router])
    await server.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def will(url: str, client_id: str, topic: str) -> None:
    broker = MqttBroker(url, client_id=client_id, will_topic=topic, will_payload="gone")
    await broker.connect()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    if sys.argv[1] == "--will":
        asyncio.run(will(*sys.argv[2:5]))
    else:
        asyncio.run(consume(*sys.argv[1:5]))
