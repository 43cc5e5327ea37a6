"""End to end: real-format payloads published to a real mosquitto arrive as points in a real InfluxDB,
including across an InfluxDB outage in the middle of the stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.harness import REGISTRY, Publisher, gateway_settings, running_gateway, wait_for
from tests.samples import payload_of, samples
from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer


def _points(influx: InfluxServer, q: str) -> list[dict[str, Any]]:
    return influx.query("anxin", q)


def test_mqtt_to_influxdb(tmp_path: Path, mosquitto: MosquittoServer, influx: InfluxServer) -> None:
    s = samples()
    settings = gateway_settings(tmp_path, mqtt_port=mosquitto.port, influx_url=influx.url)
    with running_gateway(settings, registry=REGISTRY) as gw, Publisher(mosquitto.port) as pub:
        fridge = s["z2m-kitchen-fridge"]
        pub.publish(fridge["topic"], payload_of(fridge))
        am319 = s["cs-am319-air"]
        pub.publish(am319["topic"], payload_of(am319))
        pub.publish("zigbee2mqtt/sens_smoke1", b'{"smoke":false,"battery":"97","linkquality":57}')
        wait_for(lambda: gw.metrics.get("anxin_readings_total") >= 1, what="first batch")
        assert gw.drain(20)

    temp = _points(influx, 'SELECT value, institution_id FROM temperature WHERE device_id = \'Kühlschrank Küche\'')
    assert [(p["value"], p["institution_id"]) for p in temp] == [(6.75, "xm-001")]
    co2 = _points(influx, "SELECT value FROM co2 WHERE device_id = '1000000000000001'")
    assert [p["value"] for p in co2] == [936]
    hcho = _points(influx, "SELECT value FROM hcho")
    assert [p["value"] for p in hcho] == [0.04]
    battery = _points(influx, "SELECT value FROM battery WHERE device_id = 'sens_smoke1'")
    assert [p["value"] for p in battery] == [97]


def test_influxdb_outage_mid_stream_loses_nothing(tmp_path: Path, mosquitto: MosquittoServer,
                                                  influx: InfluxServer) -> None:
    n, devices = 3000, 60
    base_ms = 0
    settings = gateway_settings(tmp_path, mqtt_port=mosquitto.port, influx_url=influx.url, batch_size=200)
    with running_gateway(settings) as gw, Publisher(mosquitto.port) as pub:
        import time

        base_ms = int(time.time() * 1000) - n  # device clock: distinct, plausible timestamp per message
        for i in range(n):
            if i == n // 3:
                assert gw.drain(20)
                influx.stop()  # outage begins
            if i == 2 * n // 3:
                wait_for(lambda: gw.sink.batches_spooled > 0, what="spooling")  # type: ignore[attr-defined]
                influx.start()  # outage ends, same port and data
            body = {"smoke": False, "battery": i % 100, "last_seen": base_ms + i}
            pub.publish(f"zigbee2mqtt/dev-{i % devices}", json.dumps(body).encode())
        wait_for(lambda: gw.metrics.get("anxin_messages_total", profile="zigbee2mqtt-smoke") == n,
                 what="all messages decoded")
        assert gw.drain(30)
        wait_for(lambda: gw.sink.spool_segments == 0, timeout=60, what="spool drained")  # type: ignore[attr-defined]
        assert gw.sink.batches_replayed > 0  # type: ignore[attr-defined]

    rows = _points(influx, "SELECT value, device_id FROM battery")
    assert len(rows) == n
    got = sorted((r["device_id"], r["value"]) for r in rows)
    assert got == sorted((f"dev-{i % devices}", i % 100) for i in range(n))
