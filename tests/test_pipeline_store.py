"""The pipeline against real stores: events and dead letters in SQLite and PostgreSQL, readings in
the SQLite telemetry sink, over a real mosquitto."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from anxin.db import DeadLetter, EventRecord
from tests.harness import REGISTRY, Publisher, gateway_settings, running_gateway, wait_for
from tests.servers.mosquitto import MosquittoServer
from tests.servers.postgres import PostgresServer

SMOKE = b'{"battery":100,"voltage":3195,"linkquality":57,"smoke":true,"sensitivity":"high"}'
SMOKE_CLEAR = b'{"battery":100,"voltage":3195,"linkquality":57,"smoke":false}'


def _events(gw) -> list[EventRecord]:
    with gw.sessions() as s:
        return list(s.scalars(select(EventRecord).order_by(EventRecord.id)))


def _dead(gw) -> list[DeadLetter]:
    with gw.sessions() as s:
        return list(s.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def test_mqtt_to_sqlite_events_readings_and_dead_letters(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=mosquitto.port, telemetry_sink="sqlite")
    with running_gateway(settings, registry=REGISTRY) as gw, Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/sens_smoke1", SMOKE)
        pub.publish("zigbee2mqtt/sens_smoke1", SMOKE)  # an identical alarm repeat is never suppressed
        pub.publish("zigbee2mqtt/sens_smoke1", SMOKE_CLEAR)
        pub.publish("zigbee2mqtt/sens_smoke1", SMOKE_CLEAR)  # byte-identical repeat: skipped
        pub.publish("zigbee2mqtt/sens_smoke1", SMOKE_CLEAR.replace(b"57", b"58"))  # clear again: not stored
        pub.publish("zigbee2mqtt/sens_smoke1", b'{"smoke": tru')  # malformed JSON
        pub.publish("zigbee2mqtt/mystery", b'{"colour": "blue"}')  # no profile fits
        wait_for(lambda: gw.metrics.get("anxin_dead_letters_total", kind="malformed") == 1, what="dead letter")
        assert gw.drain(20)

        events = [(e.device_id, e.institution_id, e.type, e.state) for e in _events(gw)]
        assert events.count(("sens_smoke1", "xm-001", "alarm.smoke", "active")) == 2
        assert events.count(("sens_smoke1", "xm-001", "alarm.smoke", "clear")) == 1
        assert gw.metrics.get("anxin_duplicates_total") == 1

        # (the smoke detector rides the alarm lane's session: no order across the two sessions)
        dead = sorted(_dead(gw), key=lambda d: d.source, reverse=True)
        assert [d.source for d in dead] == ["mqtt:zigbee2mqtt/sens_smoke1", "mqtt:zigbee2mqtt/mystery"]
        assert "malformed JSON" in dead[0].reason and dead[0].payload == b'{"smoke": tru'
        assert "fits none" in dead[1].reason

        metrics = gw.metrics.render()
        assert 'anxin_dead_letters_total{kind="malformed"} 1' in metrics
        assert 'anxin_dead_letters_total{kind="no_profile"} 1' in metrics

    rows = sqlite3.connect(settings.sqlite_telemetry_path).execute(
        "SELECT device_id, institution_id, metric, value FROM readings WHERE metric='battery'").fetchall()
    assert rows == [("sens_smoke1", "xm-001", "battery", 100.0)] * 4


def test_events_and_dead_letters_on_postgresql(tmp_path: Path, postgres: PostgresServer) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=1, database_url=postgres.url, telemetry_sink="sqlite")
    with running_gateway(settings, registry=REGISTRY, mqtt=False) as gw:
        gw.pipeline.submit("zigbee2mqtt/sens_smoke1", SMOKE)
        gw.pipeline.submit("zigbee2mqtt/sens_smoke1", b"\xff\xfe not json")
        assert gw.drain(20)
        assert [(e.type, e.state, e.institution_id) for e in _events(gw) if e.type == "alarm.smoke"] == [
            ("alarm.smoke", "active", "xm-001")]
        dead = _dead(gw)
        assert len(dead) == 1 and dead[0].payload == b"\xff\xfe not json"


def test_database_outage_is_retried_not_lost(tmp_path: Path) -> None:
    """The database file's directory vanishes mid-run (an outage); events wait and land afterwards."""
    db_dir = tmp_path / "db"
    settings = gateway_settings(tmp_path, mqtt_port=1, database_url=f"sqlite:///{db_dir}/anxin.db",
                                telemetry_sink="sqlite")
    with running_gateway(settings, registry=REGISTRY, mqtt=False) as gw:
        gw.engine.dispose()
        moved = tmp_path / "db-away"
        db_dir.rename(moved)  # connections now fail: "unable to open database file"
        gw.pipeline.submit("zigbee2mqtt/sens_smoke1", SMOKE)
        wait_for(lambda: gw.metrics.get("anxin_db_write_retries_total") >= 2, what="retries")
        assert gw.writer.pending() == 1
        moved.rename(db_dir)
        assert gw.writer.wait_idle(20)
        assert [e.type for e in _events(gw) if e.state == "active"] == ["alarm.smoke"]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_persistent_session_delivers_what_arrived_while_down(
        tmp_path: Path, mosquitto: MosquittoServer, protocol: str) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=mosquitto.port, telemetry_sink="sqlite",
                                mqtt_protocol=protocol)
    with running_gateway(settings, registry=REGISTRY):
        pass  # first connection creates the persistent session and its subscriptions
    with Publisher(mosquitto.port) as pub:
        for i in range(50):
            pub.publish("zigbee2mqtt/sens_smoke1", b'{"smoke":false,"battery":%d}' % i)
    with running_gateway(settings, registry=REGISTRY) as gw:
        wait_for(lambda: gw.metrics.get("anxin_messages_total", profile="zigbee2mqtt-smoke") == 50,
                 what="50 queued messages")
        assert gw.drain(20)
    rows = sqlite3.connect(settings.sqlite_telemetry_path).execute(
        "SELECT value FROM readings WHERE metric='battery' ORDER BY ts_ns").fetchall()
    assert sorted(int(r[0]) for r in rows) == list(range(50))
