"""The private test broker really persists: a persistent session's queued QoS 1 message survives a restart."""

from __future__ import annotations

import queue
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.harness import Publisher, wait_for
from tests.servers.mosquitto import MosquittoServer


def _session(port: int, client_id: str, inbox: queue.Queue[bytes]) -> mqtt.Client:
    """A persistent session (clean_session false) subscribed at QoS 1."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    subscribed = queue.Queue[bool]()
    client.on_message = lambda _c, _u, msg: inbox.put(bytes(msg.payload))
    client.on_subscribe = lambda *_: subscribed.put(True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe("zigbee2mqtt/+", qos=1)
    assert subscribed.get(timeout=10)
    return client


def _close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill-after-autosave"])
def test_queued_qos1_message_survives_broker_restart(tmp_path: Path, hard: bool) -> None:
    marker = f"panic-{uuid.uuid4().hex}".encode()
    client_id = f"persist-{uuid.uuid4().hex[:8]}"
    with MosquittoServer(tmp_path / "mq") as broker:
        inbox: queue.Queue[bytes] = queue.Queue()
        _close(_session(broker.port, client_id, inbox))  # offline now: the broker queues for it
        with Publisher(broker.port) as pub:
            pub.publish("zigbee2mqtt/sos-front", b'{"action":"emergency","m":"' + marker + b'"}', qos=1)
        if hard:  # SIGKILL saves nothing: the message must already be in the autosaved file
            wait_for(lambda: broker.db_file.exists() and marker in broker.db_file.read_bytes(), what="autosave")
            broker.restart(hard=True)
        else:
            broker.stop()
            assert marker in broker.db_file.read_bytes(), "mosquitto did not write its persistence file"
            broker.start()
        client = _session(broker.port, client_id, inbox)
        try:
            got = inbox.get(timeout=15)
        finally:
            _close(client)
        assert marker in got
