"""Platform pushes over HTTP (CTWing, OceanConnect, vendor hosts) through the real app and stores."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from anxin.db import DeadLetter, EventRecord
from program.web import build_app as create_app
from tests.harness import gateway_settings, running_gateway
from tests.samples import samples

AUTH = {"Authorization": "Bearer test-token"}
REGISTRY = {
    "institutions": [{"id": "xm-002", "name": "厦门市湖里区贝贝托育中心"}],
    "devices": [{"id": "860374051096202", "institution": "xm-002", "profile": "ctwing-lian-smoke"},
                {"id": "868000000001003196", "institution": "xm-002", "profile": "wanlin-alarm-host"}],
}


def test_push_is_decoded_stored_and_answered_after_commit(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=1, telemetry_sink="sqlite")
    with running_gateway(settings, registry=REGISTRY, mqtt=False) as gw, TestClient(create_app(gw)) as http:
        sos = samples()["nb-wanlin-host-sos"]["payload_text"]
        resp = http.post("/ingest/wanlin-alarm-host", content=sos.encode(), headers=AUTH)
        assert resp.status_code == 200, resp.text
        assert resp.json()["device_id"] == "868000000001003196" and resp.json()["events"] >= 1
        # 200 means committed: the event is already in the database
        with gw.sessions() as s:
            ev = s.scalars(select(EventRecord).where(EventRecord.type == "alarm.panic")).one()
        assert (ev.device_id, ev.institution_id, ev.state) == ("868000000001003196", "xm-002", "active")
        assert ev.source == "http:wanlin-alarm-host"

        ctwing = samples()["nb-ctwing-lian-smoke-silenced"]["payload_text"].encode()
        resp = http.post("/ingest/ctwing-lian-smoke?token=test-token", content=ctwing)
        assert resp.status_code == 200, resp.text
        assert resp.json()["device_id"] == "860374051096202"


def test_push_errors_are_clear(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=1, telemetry_sink="sqlite")
    with running_gateway(settings, mqtt=False) as gw, TestClient(create_app(gw)) as http:
        assert http.post("/ingest/ctwing-lian-smoke", content=b"{}").status_code == 401
        assert http.post("/ingest/ctwing-lian-smoke", content=b"{}",
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.post("/ingest/no-such-profile", content=b"{}", headers=AUTH).status_code == 404
        resp = http.post("/ingest/ctwing-lian-smoke", content=b'{"IMEI": ', headers=AUTH)
        assert resp.status_code == 422 and "malformed JSON" in resp.json()["detail"]
        assert gw.drain(10)
        with gw.sessions() as s:
            dead = s.scalars(select(DeadLetter)).one()
        assert dead.payload == b'{"IMEI": ' and dead.source == "http:ctwing-lian-smoke"
        metrics = http.get("/metrics").text
        assert 'anxin_dead_letters_total{kind="malformed"} 1' in metrics
        health = http.get("/healthz")  # no broker in this test: the MQTT sessions are down
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        assert health.json()["mqtt_connected"] is False and health.json()["alarm_lane"]["connected"] is False


def test_demo_inbox_collects_notifications(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=1, telemetry_sink="sqlite", demo_inbox=True)
    with running_gateway(settings, mqtt=False) as gw, TestClient(create_app(gw)) as http:
        assert http.post("/demo/inbox/police", json={"title": "【一键报警】测试"}).status_code == 200
        assert http.get("/demo/inbox").json() == [{"receiver": "police", "title": "【一键报警】测试"}]
    settings = gateway_settings(tmp_path / "off", mqtt_port=1, telemetry_sink="sqlite")
    with running_gateway(settings, mqtt=False) as gw, TestClient(create_app(gw)) as http:
        assert http.get("/demo/inbox").status_code == 404  # only in the demo
