"""Device simulator: publishes real-format payloads (zigbee2mqtt JSON, ChirpStack v4 uplinks carrying
Milesight binary frames) for the demo registry, with an occasional panic press and smoke alarm."""

from __future__ import annotations

import base64
import json
import logging
import random
import struct
import threading
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)

CHIRPSTACK_APP = "ca739e26-7b67-4f14-b69e-d568c22a5a75"


def am319_frame(battery: int, temp_c: float, rh: float, co2: int, tvoc_mg: float, hpa: float, hcho_mg: float,
                pm25: int, pm10: int) -> bytes:
    """Milesight AM319 (HCHO) TLV frame, channel layout as in the vendor decoder."""
    return b"".join([
        b"\x01\x75" + struct.pack("<B", battery),
        b"\x03\x67" + struct.pack("<h", round(temp_c * 10)),
        b"\x04\x68" + struct.pack("<B", round(rh * 2)),
        b"\x07\x7d" + struct.pack("<H", co2),
        b"\x08\x7d" + struct.pack("<H", round(tvoc_mg * 100)),
        b"\x09\x73" + struct.pack("<H", round(hpa * 10)),
        b"\x0a\x7d" + struct.pack("<H", round(hcho_mg * 100)),
        b"\x0b\x7d" + struct.pack("<H", pm25),
        b"\x0c\x7d" + struct.pack("<H", pm10),
    ])


def em300_th_frame(battery: int, temp_c: float, rh: float) -> bytes:
    return (b"\x01\x75" + struct.pack("<B", battery) + b"\x03\x67" + struct.pack("<h", round(temp_c * 10))
            + b"\x04\x68" + struct.pack("<B", round(rh * 2)))


def chirpstack_uplink(dev_eui: str, frame: bytes, fcnt: int) -> tuple[str, bytes]:
    now = datetime.now(UTC).isoformat()
    body: dict[str, Any] = {
        "deduplicationId": f"sim-{dev_eui}-{fcnt}",
        "time": now,
        "deviceInfo": {"applicationId": CHIRPSTACK_APP, "devEui": dev_eui, "deviceName": dev_eui, "tags": {}},
        "fCnt": fcnt,
        "fPort": 85,
        "confirmed": False,
        "data": base64.b64encode(frame).decode(),
        "rxInfo": [{"gatewayId": "6a7e111a10000000", "time": now, "rssi": random.randint(-110, -40),
                    "snr": round(random.uniform(-5, 12), 1)}],
    }
    return f"application/{CHIRPSTACK_APP}/device/{dev_eui}/event/up", json.dumps(body).encode()


def z2m(name: str, payload: dict[str, Any]) -> tuple[str, bytes]:
    payload = {**payload, "linkquality": random.randint(40, 200), "last_seen": datetime.now(UTC).isoformat()}
    return f"zigbee2mqtt/{name}", json.dumps(payload, ensure_ascii=False).encode()


class Simulator:
    def __init__(self, host: str, port: int, *, period_s: float = 5.0, alarm_every_s: float = 60.0) -> None:
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"anxin-sim-{random.getrandbits(30)}")
        self._host, self._port = host, port
        self._period = period_s
        self._alarm_every = alarm_every_s
        self._stop = threading.Event()
        self._fcnt = 0
        self.published = 0

    def messages(self, tick: int) -> list[tuple[str, bytes]]:
        self._fcnt += 1
        r = random.Random(tick)
        msgs = [
            z2m("air-siming-class1", {"co2": r.randint(450, 1300), "formaldehyd": r.randint(10, 110),
                                      "voc": r.randint(5, 60), "temperature": round(r.uniform(20, 27), 1),
                                      "humidity": round(r.uniform(35, 70), 1)}),
            z2m("Kühlschrank Küche", {"battery": 37, "temperature": round(r.uniform(2.0, 9.5), 2),
                                      "humidity": round(r.uniform(60, 70), 2), "pressure": 1022.8, "voltage": 2905}),
            z2m("door-siming-gate", {"contact": r.random() > 0.2, "battery": 100, "voltage": 3015}),
            chirpstack_uplink("24e124710b423527", am319_frame(85, r.uniform(20, 28), r.uniform(35, 70),
                              r.randint(500, 1400), r.uniform(0.1, 0.7), 1008.6, r.uniform(0.01, 0.12),
                              r.randint(5, 90), r.randint(10, 120)), self._fcnt),
            chirpstack_uplink("24e124136b316530", em300_th_frame(92, r.uniform(22, 30), r.uniform(40, 70)),
                              self._fcnt),
        ]
        if tick % max(1, int(self._alarm_every / self._period)) == 0 and tick > 0:
            msgs.append(z2m("sos-siming-front", {"action": "emergency", "battery": 100}))
            msgs.append(z2m("smoke-siming-nap", {"smoke": True, "battery": 100, "voltage": 3195}))
            msgs.append(z2m("smoke-siming-nap", {"smoke": False, "battery": 100, "voltage": 3195}))
        return msgs

    def run(self, duration_s: float | None = None) -> None:
        self._client.connect(self._host, self._port)
        self._client.loop_start()
        end = None if duration_s is None else time.monotonic() + duration_s
        tick = 0
        try:
            while not self._stop.is_set() and (end is None or time.monotonic() < end):
                for topic, payload in self.messages(tick):
                    self._client.publish(topic, payload, qos=1)
                    self.published += 1
                tick += 1
                self._stop.wait(self._period)
        finally:
            self._client.loop_stop()
            self._client.disconnect()

    def stop(self) -> None:
        self._stop.set()
