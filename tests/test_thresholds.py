"""Threshold rules evaluated on their averaging windows from the telemetry store (SQLite here, InfluxDB
below), becoming env.* incidents routed to the institution."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from alerting.models import Incident
from alerting.thresholds import (
    InfluxWindowSource,
    Override,
    Rule,
    ThresholdConfig,
    ThresholdEvaluator,
    load_thresholds,
)
from anxin.db import EventRecord
from anxin.model import EventState, EventType, Reading
from gateway.sinks.influx import InfluxSink
from tests.harness import gateway_settings, running_gateway, wait_for
from tests.servers.influxdb import InfluxServer
from tests.servers.webhook import WebhookReceiver
from tests.test_alerting import directory


def series(device: str, metric: str, values: list[float], minutes: float) -> list[Reading]:
    """Readings spread evenly over the last ``minutes``."""
    now = datetime.now(UTC)
    step = minutes * 60 / len(values)
    return [Reading(device, metric, v, now - timedelta(seconds=(len(values) - i) * step), "xm-001")
            for i, v in enumerate(values)]


def test_fridge_too_warm_for_15_minutes_alerts_the_institution(tmp_path: Path, webhooks: WebhookReceiver) -> None:
    registry = directory(webhooks.url)
    registry["devices"].append({"id": "fridge-1", "institution": "xm-001", "profile": "zigbee2mqtt-fridge",
                                "room": "厨房"})
    registry["devices"].append({"id": "room-th", "institution": "xm-001", "profile": "zigbee2mqtt-temp-humidity"})
    settings = gateway_settings(tmp_path, mqtt_port=1, telemetry_sink="sqlite", thresholds_interval_s=3600,
                                alerting_tick_s=0.05)
    with running_gateway(settings, registry=registry, mqtt=False) as gw:
        assert gw.thresholds is not None
        gw.sink.write(series("fridge-1", "temperature", [8.5, 9.0, 8.8, 9.4], minutes=14))
        gw.sink.write(series("room-th", "temperature", [26.0, 27.0, 26.5], minutes=14))  # a room is no fridge
        gw.sink.write(series("fridge-2", "temperature", [9.0, 4.0, 9.0], minutes=14))  # dipped: not sustained
        events = gw.thresholds.evaluate()
        assert [(e.device_id, e.type, e.state) for e in events] == [
            ("fridge-1", EventType.FRIDGE_WARM, EventState.ACTIVE)]
        assert gw.thresholds.evaluate() == []  # still warm: no repeat
        wait_for(lambda: "/staff" in webhooks.paths(), what="director notified")
        note = next(r for r in webhooks.received if r.path == "/staff").json()
        assert "冰箱温度过高" in note["title"]
        with gw.sessions() as s:
            [incident] = s.scalars(select(Incident)).all()
        assert (incident.type, incident.route) == ("env.fridge_warm", "environment")
        gw.sink.write(series("fridge-1", "temperature", [6.5], minutes=0.1))
        assert [(e.type, e.state) for e in gw.thresholds.evaluate()] == [(EventType.FRIDGE_WARM, EventState.CLEAR)]


def test_co2_from_influxdb_with_institution_room_and_device_overrides(tmp_path: Path, influx: InfluxServer) -> None:
    """The most specific override wins: device, then room, then institution, then the rule."""
    sink = InfluxSink(influx.url, "anxin", spool_dir=tmp_path)
    sink.write(series("class-1", "co2", [900, 920, 910, 905], minutes=9))  # strict institution: 850
    sink.write(series("class-2", "co2", [1200, 1300, 1250], minutes=9))  # rule: 1000
    sink.write(series("nap-1", "co2", [760, 770, 765], minutes=9))  # nap room of the strict one: 750
    sink.write(series("nap-2", "co2", [760, 770, 765], minutes=9))  # its own device override: 800
    sink.write(series("kitchen", "co2", [1400, 1450], minutes=9))  # kitchen room: 1500, not breached
    sink.close()
    base = load_thresholds()
    config = ThresholdConfig(rules=[r for r in base.rules if r.name == "co2"], overrides=[
        Override(rule="co2", institution="strict", above=850, clear_below=800),
        Override(rule="co2", institution="strict", room="午睡室", above=750, clear_below=700),
        Override(rule="co2", institution="strict", device="nap-2", above=800, clear_below=780),
        Override(rule="co2", institution="default", room="厨房", above=1500, clear_below=1400)])
    rooms = {"class-1": ("strict", "大一班"), "class-2": ("default", "大二班"), "nap-1": ("strict", "午睡室"),
             "nap-2": ("strict", "午睡室"), "kitchen": ("default", "厨房")}
    emitted: list[object] = []
    evaluator = ThresholdEvaluator(config, InfluxWindowSource(influx.url, "anxin"),
                                   lambda d: (rooms[d][0], "env_monitor", rooms[d][1]), emitted.extend)
    events = evaluator.evaluate()
    assert sorted((e.device_id, e.detail["limit"]) for e in events) == [
        ("class-1", 850), ("class-2", 1000), ("nap-1", 750)]
    assert events == emitted
    with pytest.raises(ValueError, match="unknown rule"):
        ThresholdConfig(rules=config.rules, overrides=[Override(rule="co3", institution="x", above=1, clear_below=0)])


def test_rules_are_validated() -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        Rule(name="x", metric="co2", statistic="min", window_s=60, above=10, clear_below=20, event=EventType.CO2_HIGH)
    with pytest.raises(ValueError, match="env"):
        Rule(name="x", metric="co2", statistic="min", window_s=60, above=10, clear_below=5, event=EventType.SMOKE)


def test_silent_device_goes_offline_and_comes_back(tmp_path: Path, webhooks: WebhookReceiver) -> None:
    """A registered device silent for more than factor x its profile's heartbeat interval is offline."""
    registry = directory(webhooks.url)
    registry["devices"].append({"id": "th-quiet", "institution": "xm-001", "profile": "zigbee2mqtt-temp-humidity"})
    registry["devices"].append({"id": "th-chatty", "institution": "xm-001", "profile": "zigbee2mqtt-temp-humidity"})
    settings = gateway_settings(tmp_path, mqtt_port=1, telemetry_sink="sqlite", thresholds_interval_s=3600,
                                alerting_tick_s=0.05)
    with running_gateway(settings, registry=registry, mqtt=False) as gw:
        assert gw.thresholds is not None and gw.thresholds.offline is not None
        detector = gw.thresholds.offline
        heartbeat = gw.profiles.by_name["zigbee2mqtt-temp-humidity"].spec.heartbeat_interval_s
        assert heartbeat == 3600
        long_ago = datetime.now(UTC) - timedelta(seconds=heartbeat * 3)
        gw.sink.write([Reading("th-quiet", "temperature", 21.0, long_ago, "xm-001"),
                       Reading("th-chatty", "temperature", 21.0, datetime.now(UTC), "xm-001")])
        detector._started = long_ago.timestamp()  # the gateway has been up long enough to judge silence
        events = detector.evaluate()
        offline = {(e.device_id, e.type, e.state) for e in events}
        assert ("th-quiet", EventType.OFFLINE, EventState.ACTIVE) in offline
        assert not any(d == "th-chatty" for d, _, _ in offline)
        assert detector.evaluate() == []  # still silent: said once
        wait_for(lambda: "/contractor" in webhooks.paths(), what="contractor told (faults route)")
        gw.sink.write([Reading("th-quiet", "temperature", 21.5, datetime.now(UTC), "xm-001")])
        back = [(e.device_id, e.state) for e in detector.evaluate() if e.device_id == "th-quiet"]
        assert back == [("th-quiet", EventState.CLEAR)]


def test_with_two_instances_one_evaluates_and_the_other_takes_over_knowing_what_is_active(
        tmp_path: Path, webhooks: WebhookReceiver) -> None:
    """Rules run under a database lease: one event per breach however many gateways run, and the
    instance that takes over after the holder stopped still ends the breach it did not see begin."""
    registry = directory(webhooks.url)
    registry["devices"].append({"id": "fridge-1", "institution": "xm-001", "profile": "zigbee2mqtt-fridge"})
    common: dict[str, Any] = {"telemetry_sink": "sqlite", "thresholds_interval_s": 0.2, "database_url": f"sqlite:///{tmp_path}/a.db",
              "sqlite_telemetry_path": tmp_path / "telemetry.db"}

    def fridge_events() -> list[tuple[str, str]]:
        with first.sessions() as s:
            return [(r.state, r.source) for r in s.scalars(select(EventRecord).where(
                EventRecord.type == EventType.FRIDGE_WARM.value).order_by(EventRecord.id))]

    settings_a = gateway_settings(tmp_path / "a", mqtt_port=1, alerting_instance_id="gw-a", **common)
    settings_b = gateway_settings(tmp_path / "b", mqtt_port=1, alerting_instance_id="gw-b", **common)
    with running_gateway(settings_a, registry=registry, mqtt=False) as first, \
            running_gateway(settings_b, mqtt=False) as second:
        first.sink.write(series("fridge-1", "temperature", [8.5, 9.0, 8.8, 9.4], minutes=14))
        wait_for(lambda: len(fridge_events()) == 1, what="the breach recorded")
        time.sleep(2)  # ten rounds of both instances
        assert [state for state, _ in fridge_events()] == ["active"]
        assert second.thresholds is not None
        first.stop()  # its lease lapses; the second instance takes the rules over
        second.sink.write(series("fridge-1", "temperature", [5.0], minutes=0.05))
        wait_for(lambda: len(fridge_events()) == 2, timeout=40, what="the clear from the other instance")
        assert [state for state, _ in fridge_events()] == ["active", "clear"]


def test_a_device_offline_by_its_own_lwt_stays_offline_after_a_restart_until_it_reports() -> None:
    """After a restart the rules are primed with the devices the database says are offline (LWT,
    availability or this rule). Silence is counted from the start for devices never heard of, but that
    must not clear an offline device: only a reading that arrives from then on does."""
    from alerting.thresholds import OfflineDetector
    from anxin.model import EventState, EventType

    seen: dict[str, float] = {}
    emitted: list[Any] = []
    detector = OfflineDetector(lambda _lookback: dict(seen), lambda: {"door-1": ("k1", 60)}, emitted.extend)
    detector.prime({"door-1"})
    assert detector.evaluate() == []  # no reading since: still offline, no clear
    seen["door-1"] = datetime.now(UTC).timestamp() - 3600  # an old reading (before it went offline)
    assert detector.evaluate() == []
    seen["door-1"] = datetime.now(UTC).timestamp() + 1  # it reports again
    [back] = detector.evaluate()
    assert (back.type, back.state) == (EventType.OFFLINE, EventState.CLEAR)
    assert emitted == [back]
