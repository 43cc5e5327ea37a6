"""An ingest session with a hash partition reads PUBLISH packets itself: another partition's messages are
acknowledged on their raw topic bytes, never decoded and never delivered again; messages carrying MQTT 5
properties still go through gmqtt's own parser."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from anxin.config import Settings
from gateway.mqtt_source import partition_of, partition_of_bytes
from gateway.service import Gateway
from program.registry_file import import_registry
from tests.harness import REGISTRY, Publisher, gateway_settings, wait_for
from tests.servers.mosquitto import MosquittoServer


def _stored(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(path) as conn:
        try:
            return {r[0] for r in conn.execute("SELECT device_id FROM readings WHERE metric='battery'")}
        except sqlite3.OperationalError:
            return set()


def _start(settings: Settings) -> Gateway:
    gw = Gateway(settings, partition=(0, 2))
    import_registry(gw.sessions, REGISTRY)
    gw.registry.refresh()
    gw.start()
    assert gw.mqtt.subscribed.wait(15), "gateway did not subscribe"
    return gw


def _publish_v5_with_property(port: int, topics: list[str]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub5-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for t in topics:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = ("site", "test")
            client.publish(t, b'{"smoke":false,"battery":50}', qos=1, properties=props).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_partition_of_bytes_is_partition_of() -> None:
    for t in ("zigbee2mqtt/dev-1", "zigbee2mqtt/Kühlschrank Küche", "application/1/device/24e1/event/up"):
        assert partition_of_bytes(t.encode(), 2) == partition_of(t, 2)


def test_other_partition_is_acknowledged_unread(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=mosquitto.port, telemetry_sink="sqlite", duplicate_window_s=0)
    plain = [f"zigbee2mqtt/dev-{i}" for i in range(40)]  # forwarded without properties: the session's own reader
    with_props = [f"zigbee2mqtt/prop-{i}" for i in range(40)]  # with a user property: gmqtt's parser
    ours = {t.split("/")[1] for t in plain + with_props if partition_of(t, 2) == 0}
    others = len(plain) + len(with_props) - len(ours)
    assert 0 < len(ours) < len(plain) + len(with_props)

    gw = _start(settings)
    parsed_by_gmqtt: list[bytes] = []
    gmqtt_publish = gw.mqtt._gmqtt_publish

    def counting(cmd: int, raw: bytes) -> None:
        parsed_by_gmqtt.append(raw)
        gmqtt_publish(cmd, raw)

    gw.mqtt._gmqtt_publish = counting
    try:
        with Publisher(mosquitto.port) as pub:
            for t in plain:
                pub.publish(t, b'{"smoke":false,"battery":50}')
        _publish_v5_with_property(mosquitto.port, with_props)
        wait_for(lambda: _stored(settings.sqlite_telemetry_path) == ours, timeout=30, what="own partition stored")
        wait_for(lambda: gw.metrics.get("anxin_mqtt_left_to_other_worker_total") == others,
                 what="the other partition acknowledged")
        assert gw.metrics.get("anxin_messages_total", profile="zigbee2mqtt-smoke") == len(ours)
        assert len(parsed_by_gmqtt) == len(with_props)  # both paths were taken
    finally:
        gw.stop()

    # Same session again: nothing of the other partition was left unacknowledged at the broker. The broker
    # sends a session's queue in order, so once the marker after it arrives, a redelivery would have too.
    gw = _start(settings)
    try:
        marker = next(f"zigbee2mqtt/marker-{i}" for i in range(100) if partition_of(f"zigbee2mqtt/marker-{i}", 2) == 0)
        with Publisher(mosquitto.port) as pub:
            pub.publish(marker, b'{"smoke":false,"battery":51}')
        wait_for(lambda: marker.split("/")[1] in _stored(settings.sqlite_telemetry_path), what="marker stored")
        assert gw.metrics.get("anxin_mqtt_left_to_other_worker_total") == 0
        assert _stored(settings.sqlite_telemetry_path) == ours | {marker.split("/")[1]}
    finally:
        gw.stop()
