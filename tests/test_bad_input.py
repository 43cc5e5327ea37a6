"""Bad input loses nothing and tells: every message on a device's topic ends as readings/events or as a
dead letter with the reason; a device that speaks garbage or reports the impossible gets a fault.sensor
event; oversized payloads and bodies are refused before decoding; out-of-range ids are 422, not 500.
Real mosquitto, SQLite, the real HTTP app (and a real uvicorn for chunked bodies)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import select

from anxin.db import DeadLetter, EventRecord
from anxin.model import EventState, EventType
from program.web import build_app as create_app
from tests.harness import Publisher, gateway_settings, running_gateway, wait_for
from tests.profile_helpers import profile_set
from tests.samples import samples
from tests.servers import free_port
from tests.servers.mosquitto import MosquittoServer

REGISTRY = {
    "institutions": [{"id": "xm-001", "name": "厦门市思明区小太阳托育园", "district": "思明区"}],
    "devices": [
        {"id": "sens_smoke1", "institution": "xm-001", "profile": "zigbee2mqtt-smoke"},
        {"id": "sos-front", "institution": "xm-001", "profile": "zigbee2mqtt-sos-button"},
        {"id": "fridge", "institution": "xm-001", "profile": "zigbee2mqtt-fridge"},
        {"id": "air-1", "institution": "xm-001", "profile": "zigbee2mqtt-air-quality"},
        {"id": "860374051096202", "institution": "xm-001", "profile": "ctwing-lian-smoke"},
    ],
}
AUTH = {"Authorization": "Bearer test-token"}
OPERATOR = {"Authorization": "Bearer desk-token-0123456789"}


def faults(gw: Any) -> list[EventRecord]:
    with gw.sessions() as s:
        return list(s.scalars(select(EventRecord).where(EventRecord.type == "fault.sensor").order_by(EventRecord.id)))


def dead(gw: Any) -> list[DeadLetter]:
    with gw.sessions() as s:
        return list(s.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def readings(settings: Any) -> list[tuple[str, str, float]]:
    with sqlite3.connect(settings.sqlite_telemetry_path) as db:
        return db.execute("SELECT device_id, metric, value FROM readings ORDER BY ts_ns, metric").fetchall()


@pytest.mark.parametrize(("topic", "profile", "payload", "problem"), [
    # legitimately nothing (or only what is there): quiet or unknown fields, idle presses, other texts
    ("zigbee2mqtt/s", "zigbee2mqtt-smoke", '{"linkquality":120}', None),
    ("zigbee2mqtt/s", "zigbee2mqtt-smoke", "{}", None),
    ("zigbee2mqtt/s", "zigbee2mqtt-smoke", '{"smoke":null,"battery":"","update":{"state":"idle"}}', None),
    ("zigbee2mqtt/b", "zigbee2mqtt-sos-button", '{"action":"","battery":null}', None),
    ("zigbee2mqtt/b", "zigbee2mqtt-sos-button", '{"action":"single"}', None),
    ("zigbee2mqtt/s/availability", "zigbee2mqtt-availability", "online", None),
    ("zigbee2mqtt/s/availability", "zigbee2mqtt-availability", '{"state":"online"}', None),
    ("x", "wanlin-alarm-host", '{"dcode":"1","content":"布防_1防区"}', None),  # arming: text rules
    # a rule listing only one boolean understands the other ("not this"; another rule clears)
    ("zigbee2mqtt/l", "zigbee2mqtt-water-leak-zones", '{"water_leak_alarm_1":false,"water_leak_alarm_2":false}', None),
    ("zigbee2mqtt/c", "zigbee2mqtt-nous-e12-co", '{"carbon_monoxide":false,"end_of_life":false}', None),
    # garbage: wrong shape or a value no rule reading its field understands
    ("zigbee2mqtt/s", "zigbee2mqtt-smoke", "[1,2,3]", "payload is a JSON array"),
    ("zigbee2mqtt/s", "zigbee2mqtt-smoke", '"hello"', "payload is a bare string"),
    ("zigbee2mqtt/s", "zigbee2mqtt-smoke", "null", "payload is null"),
    ("zigbee2mqtt/s", "zigbee2mqtt-smoke", "42", "payload is a bare number"),
    ("zigbee2mqtt/s", "zigbee2mqtt-smoke", '{"smoke":"maybe"}', "smoke = 'maybe': alarm.smoke: not one of"),
    ("zigbee2mqtt/s", "zigbee2mqtt-smoke", '{"smoke":{"a":1}}', "smoke = '{\"a\":1}'"),
    ("zigbee2mqtt/l", "zigbee2mqtt-water-leak-zones", '{"water_leak_alarm_2":"maybe"}',
     "water_leak_alarm_2 = 'maybe': alarm.water_leak: not one of [True]"),
    ("zigbee2mqtt/c", "zigbee2mqtt-nous-e12-co", '{"end_of_life":"soon"}',
     "end_of_life = 'soon': fault.sensor: not one of [True]"),
    ("zigbee2mqtt/s", "zigbee2mqtt-smoke", '{"battery":"full"}', "battery = 'full': metric battery: not a number"),
    ("zigbee2mqtt/s", "zigbee2mqtt-smoke", '{"battery":true}', "metric battery: not a number"),
    ("zigbee2mqtt/s/availability", "zigbee2mqtt-availability", "maybe", "$ = 'maybe'"),
    ("zigbee2mqtt/s/availability", "zigbee2mqtt-availability", "[1]", "payload is a JSON array"),
    ("zigbee2mqtt/f", "zigbee2mqtt-fridge", '{"temperature":-1e308}', "outside the plausible range -60..150 °C"),
])
def test_the_rule_between_nothing_and_garbage(topic: str, profile: str, payload: str, problem: str | None) -> None:
    """README "Bad input": what decodes to nothing legitimately, and what is garbage."""
    m = profile_set().match(topic, payload.encode(), profile=profile)
    decoded = m.profile.decode(m.doc, m.device_id, datetime.now(UTC))
    if problem is None:
        assert decoded.problems == [] and not [e for e in decoded.events if e.type == EventType.SENSOR_FAULT]
    else:
        assert len(decoded.problems) == 1 and problem in decoded.problems[0], decoded.problems
        [fault] = [e for e in decoded.events if e.type == EventType.SENSOR_FAULT]
        assert fault.state is EventState.ACTIVE and fault.detail["reason"] == decoded.problems[0]
        assert not decoded.usable and decoded.readings == []


def test_wrong_shapes_on_an_alarm_device_are_dead_letters_and_faults(tmp_path: Path,
                                                                   mosquitto: MosquittoServer) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=mosquitto.port, telemetry_sink="sqlite",
                                mqtt_max_payload_bytes=1024, alerting_enabled=False)
    garbage = {b"[1,2,3]": "JSON array", b'{"smoke":"maybe"}': "smoke = 'maybe'", b'"hello"': "bare string"}
    with running_gateway(settings, registry=REGISTRY) as gw, Publisher(mosquitto.port) as pub:
        for payload in garbage:
            pub.publish("zigbee2mqtt/sens_smoke1", payload)
        pub.publish("zigbee2mqtt/sens_smoke1", b"")  # deletes a retained message: not the device speaking
        pub.publish("zigbee2mqtt/sens_smoke1", b'{"linkquality":120}')  # a heartbeat: a reading
        pub.publish("zigbee2mqtt/sos-front", b'{"action":"","linkquality":null}')  # an idle button: nothing
        pub.publish("anxin/unregistered-9/up", b"[4,5]")  # generic JSON, device named by its topic
        pub.publish("zigbee2mqtt/sens_smoke1", b'{"smoke":false,' + b" " * 2000 + b"}")  # over the limit

        wait_for(lambda: len(dead(gw)) == 6 and len(faults(gw)) == 4, what="dead letters and faults")
        wait_for(lambda: gw.metrics.get("anxin_messages_total", profile="zigbee2mqtt-sos-button") == 1,
                 what="the idle press processed")
        assert gw.drain(20)

        by_payload = {d.payload: d for d in dead(gw)}
        for payload, why in garbage.items():
            assert why in by_payload[payload].reason, by_payload[payload].reason
            assert by_payload[payload].source == "mqtt:zigbee2mqtt/sens_smoke1"
        assert "malformed JSON" in by_payload[b""].reason
        assert "JSON array" in by_payload[b"[1,2,3]"].reason
        big = next(d for d in dead(gw) if "too large" in d.reason)
        assert big.payload == (b'{"smoke":false,' + b" " * 2000)[:1024]  # the first bytes, never decoded
        assert "2016 bytes" in big.reason and "ANXIN_MQTT_MAX_PAYLOAD_BYTES" in big.reason

        found = [(f.device_id, f.institution_id, f.state, f.detail["reason"]) for f in faults(gw)]
        assert sorted(x[:3] for x in found) == [("sens_smoke1", "xm-001", "active")] * 3 + [
            ("unregistered-9", None, "active")]
        assert all(f.detail["profile"] in ("zigbee2mqtt-smoke", "generic-json") for f in faults(gw))
        assert [f.detail["value"] for f in faults(gw) if f.device_id == "sens_smoke1"].count("maybe") == 1

        assert readings(settings) == [("sens_smoke1", "linkquality", 120.0)]
        with gw.sessions() as s:  # the idle button and the heartbeat raised nothing
            types = [e.type for e in s.scalars(select(EventRecord))]
        assert sorted(types) == ["fault.sensor"] * 4
        metrics = gw.metrics.render()
        assert 'anxin_dead_letters_total{kind="unusable"} 4' in metrics
        assert 'anxin_dead_letters_total{kind="too_large"} 1' in metrics


def test_implausible_numbers_are_faults_not_readings(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=mosquitto.port, telemetry_sink="sqlite",
                                alerting_enabled=False)
    with running_gateway(settings, registry=REGISTRY) as gw, Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/fridge", b'{"temperature":"-1e308","battery":37}')
        pub.publish("zigbee2mqtt/fridge", b'{"temperature":1.23e38}')
        pub.publish("zigbee2mqtt/fridge", b'{"temperature":"1e999"}')  # overflows to infinity
        pub.publish("zigbee2mqtt/fridge", b'{"temperature":4.5,"battery":5}')
        pub.publish("zigbee2mqtt/air-1", b'{"co2":120,"temperature":22.5}')  # below outdoor CO2: a fault
        wait_for(lambda: len(faults(gw)) == 4, what="four faults")
        wait_for(lambda: len(readings(settings)) == 4, what="the plausible readings")
        assert gw.drain(20)

        assert sorted(readings(settings)) == sorted([
            ("fridge", "battery", 37.0), ("fridge", "temperature", 4.5), ("fridge", "battery", 5.0),
            ("air-1", "temperature", 22.5)])
        details = [f.detail for f in faults(gw)]
        assert {(d.get("metric"), d.get("value")) for d in details} >= {
            ("temperature", -1e308), ("temperature", 1.23e38), ("co2", 120.0)}
        for d in details:
            assert d["reason"] and ("plausible range" in d["reason"] or "not a finite number" in d["reason"])
        assert any(d.get("field") == "temperature" and d["value"] == "1e999" for d in details)
        # No "battery low" from an implausible battery; the real low battery (5 %) raises it.
        with gw.sessions() as s:
            low = list(s.scalars(select(EventRecord).where(EventRecord.type == "fault.battery_low")))
        assert [(e.state, e.detail["value"]) for e in low][-1] == ("active", 5)
        # Messages with nothing usable left are also kept whole as dead letters; the others are not.
        assert sorted(d.payload for d in dead(gw)) == [b'{"temperature":"1e999"}', b'{"temperature":1.23e38}']
        # What the sensors said is kept, flagged, apart from the readings (not "1e999": not a number).
        with sqlite3.connect(settings.sqlite_telemetry_path) as db:
            flagged = db.execute("SELECT device_id, institution_id, metric, value FROM implausible_readings").fetchall()
        assert sorted(flagged) == [("air-1", "xm-001", "co2", 120.0), ("fridge", "xm-001", "temperature", -1e308),
                                   ("fridge", "xm-001", "temperature", 1.23e38)]


def test_http_push_without_usable_values_is_422_with_a_fault(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=1, telemetry_sink="sqlite", alerting_enabled=False)
    push = orjson.loads(samples()["nb-ctwing-lian-smoke-silenced"]["payload_text"])
    push["payload"]["serviceData"] = {"Battery_Level": "banana"}
    with running_gateway(settings, registry=REGISTRY, mqtt=False) as gw, TestClient(create_app(gw)) as http:
        resp = http.post("/ingest/ctwing-lian-smoke", content=orjson.dumps(push), headers=AUTH)
        assert resp.status_code == 422 and "banana" in resp.json()["detail"]
        assert "dead letter" in resp.json()["detail"]
        assert gw.drain(20)
        [fault] = faults(gw)
        assert (fault.device_id, fault.institution_id, fault.detail["field"]) == (
            "860374051096202", "xm-001", "payload.serviceData.Battery_Level")
        assert dead(gw)[0].payload == orjson.dumps(push)


def test_request_bodies_over_the_limit_are_413(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=1, telemetry_sink="sqlite", http_max_body_bytes=1000,
                                api_tokens={"desk": OPERATOR["Authorization"][7:]})
    with running_gateway(settings, registry=REGISTRY, mqtt=False) as gw, TestClient(create_app(gw)) as http:
        big = b'{"IMEI":"860374051096202","pad":"' + b"x" * 2000 + b'"}'
        for path, headers in (("/ingest/ctwing-lian-smoke", AUTH), ("/api/v1/incidents/1/transition", OPERATOR),
                              ("/ack", {})):
            resp = http.post(path, content=big, headers=headers)
            assert resp.status_code == 413, (path, resp.text)
            assert "ANXIN_HTTP_MAX_BODY_BYTES" in resp.json()["detail"] and "1000 bytes" in resp.json()["detail"]
        small = samples()["nb-ctwing-lian-smoke-silenced"]["payload_text"].encode()
        assert len(small) < 1000 and http.post("/ingest/ctwing-lian-smoke", content=small,
                                               headers=AUTH).status_code == 200
        assert gw.drain(20)
        assert dead(gw) == []  # refused bodies were never read, so never decoded

        # A body streamed in chunks (no Content-Length) through a real server is cut off at the limit too.
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(gw), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: server.started, what="uvicorn")

            def chunks() -> Iterator[bytes]:
                for _ in range(40):
                    yield b"x" * 100

            resp = httpx.post(f"http://127.0.0.1:{port}/ingest/ctwing-lian-smoke", content=chunks(),
                              headers=AUTH, timeout=30)
            assert resp.status_code == 413 and "ANXIN_HTTP_MAX_BODY_BYTES" in resp.json()["detail"]
            assert "content-length" not in {k.lower() for k in resp.request.headers}
        finally:
            server.should_exit = True
            thread.join(30)
        assert dead(gw) == []


def test_out_of_range_ids_and_limits_are_422_not_500(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=1, telemetry_sink="sqlite",
                                api_tokens={"desk": OPERATOR["Authorization"][7:]})
    with running_gateway(settings, mqtt=False) as gw, TestClient(create_app(gw), raise_server_exceptions=False) as http:
        for incident in ("99999999999999999999999", str(2**63), "0", "-1", "abc", "1.5"):
            assert http.get(f"/api/v1/incidents/{incident}", headers=OPERATOR).status_code == 422, incident
            assert http.post(f"/api/v1/incidents/{incident}/transition", headers=OPERATOR,
                             json={"to": "acknowledged"}).status_code == 422, incident
        assert http.get(f"/api/v1/incidents/{2**63 - 1}", headers=OPERATOR).status_code == 404
        for limit in ("0", "-5", "1001", str(2**70), "x"):
            assert http.get(f"/api/v1/incidents?limit={limit}", headers=OPERATOR).status_code == 422, limit
        assert http.get("/api/v1/incidents?limit=1000", headers=OPERATOR).status_code == 200
        assert http.post("/api/v1/incidents/1/transition", headers=OPERATOR,
                         json={"to": "resolved", "note": "x" * 5000}).status_code == 422


def test_undecodable_messages_of_a_registered_device_raise_a_fault(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=1, telemetry_sink="sqlite", alerting_enabled=False)
    with running_gateway(settings, registry=REGISTRY, mqtt=False) as gw:
        gw.pipeline.submit("zigbee2mqtt/sens_smoke1", b'{"smoke": tru')  # registered: a broken detector
        gw.pipeline.submit("zigbee2mqtt/stranger", b'{"smoke": tru')  # nobody we know: a dead letter only
        gw.pipeline.submit("zigbee2mqtt/sens_smoke1", b"")  # deletes a retained message: a dead letter only
        assert gw.drain(20)
        assert [d.source for d in dead(gw)] == ["mqtt:zigbee2mqtt/sens_smoke1", "mqtt:zigbee2mqtt/stranger",
                                                "mqtt:zigbee2mqtt/sens_smoke1"]
        [fault] = faults(gw)
        assert (fault.device_id, fault.institution_id) == ("sens_smoke1", "xm-001")
        assert "malformed JSON" in fault.detail["reason"] and fault.detail["profile"] == "zigbee2mqtt-smoke"
