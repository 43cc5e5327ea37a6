"""Helpers to run a real gateway against the test servers and publish real MQTT traffic."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from anxin.config import Settings
from program.registry_file import import_registry
from program.system import Anxin as Gateway

TEST_SECRET = "test-ack-link-secret-0123456789abcdef"  # >= 32 characters, as the gateway requires


def gateway_settings(tmp_path: Path, *, mqtt_port: int, influx_url: str = "http://127.0.0.1:9",
                     database_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url or f"sqlite:///{tmp_path}/anxin.db",
        "mqtt_port": mqtt_port,
        "mqtt_client_id": f"gw-{uuid.uuid4().hex[:8]}",
        "influx_url": influx_url,
        "influx_database": "anxin",
        "spool_dir": tmp_path / "spool",
        "sqlite_telemetry_path": tmp_path / "telemetry.db",
        "batch_size": 500,
        "flush_interval_s": 0.1,
        "ingest_tokens": ["test-token"],
        "alerting_secret": TEST_SECRET,
        **overrides,
    }
    return Settings(**values)


REGISTRY = {
    "institutions": [{"id": "xm-001", "name": "厦门市思明区小太阳托育园", "district": "思明区"}],
    "devices": [
        {"id": "sens_smoke1", "institution": "xm-001", "profile": "zigbee2mqtt-smoke"},
        {"id": "Kühlschrank Küche", "institution": "xm-001", "profile": "zigbee2mqtt-fridge"},
    ],
}


@contextmanager
def running_gateway(settings: Settings, *, registry: dict[str, Any] | None = None,
                    mqtt: bool = True) -> Iterator[Gateway]:
    gw = Gateway(settings)
    if registry:
        import_registry(gw.sessions, registry)
        gw.registry.refresh()
    gw.start(mqtt=mqtt)
    try:
        if mqtt:
            assert gw.mqtt.subscribed.wait(15), "gateway did not subscribe"
        if mqtt and gw.alarm_lane is not None:
            assert gw.alarm_lane.ready.wait(15), "the alarm lane did not take its topics"
        yield gw
    finally:
        gw.stop()


class Publisher:
    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition",
             interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
