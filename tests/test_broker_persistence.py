"""The private test broker really persists: a persistent session's queued QoS 1 message survives a restart."""

from __future__ import annotations

import queue
import re
import subprocess
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.harness import Publisher, wait_for
from tests.servers.mosquitto import MOSQUITTO, MosquittoServer


def _session(port: int, client_id: str, inbox: queue.Queue[bytes],
             topic_filter: str | None = "zigbee2mqtt/+") -> mqtt.Client:
    """A persistent session (clean_session false), subscribed at QoS 1 to ``topic_filter`` if given."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    subscribed = queue.Queue[bool]()
    client.on_message = lambda _c, _u, msg: inbox.put(bytes(msg.payload))
    client.on_subscribe = lambda *_: subscribed.put(True)
    client.on_connect = lambda *_: subscribed.put(True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert subscribed.get(timeout=10)  # connected
    if topic_filter is not None:
        client.subscribe(topic_filter, qos=1)
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


def _mosquitto_version() -> tuple[int, ...]:
    out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout
    m = re.search(r"mosquitto version (\d+)\.(\d+)\.(\d+)", out)
    assert m, out[:200]
    return tuple(int(x) for x in m.groups())


@pytest.mark.parametrize("shared", [False, True], ids=["plain", "shared"])
def test_a_persistent_subscription_across_a_broker_restart(tmp_path: Path, shared: bool) -> None:
    """A message published after a broker restart, before the subscriber is back: a plain persistent
    subscription queues it; a shared one does too only from mosquitto 2.0.12 ("Fix $share subscriptions not
    being recovered for durable clients that reconnect"). Debian 12's 2.0.11 forgets it until the client
    subscribes again, so presses sent in that gap go to nobody."""
    filt = "$share/anxin/zigbee2mqtt/+" if shared else "zigbee2mqtt/+"
    client_id = f"persist-{uuid.uuid4().hex[:8]}"
    with MosquittoServer(tmp_path / "mq") as broker:
        inbox: queue.Queue[bytes] = queue.Queue()
        _close(_session(broker.port, client_id, inbox, filt))
        broker.restart()
        with Publisher(broker.port) as pub:
            pub.publish("zigbee2mqtt/sos-front", b"press-after-restart", qos=1)
            client = _session(broker.port, client_id, inbox, None)  # back, without subscribing again
            try:
                pub.publish("zigbee2mqtt/sos-front", b"fence", qos=1)
                if shared and _mosquitto_version() < (2, 0, 12):
                    # The session lost its subscription: once the client subscribes again, the first
                    # message it gets is a new one, so the press and the fence went to nobody.
                    _close(client)
                    client = _session(broker.port, client_id, inbox, filt)
                    pub.publish("zigbee2mqtt/sos-front", b"after-resubscribe", qos=1)
                    assert inbox.get(timeout=10) == b"after-resubscribe"
                else:
                    assert [inbox.get(timeout=10), inbox.get(timeout=10)] == [b"press-after-restart", b"fence"]
            finally:
                _close(client)
