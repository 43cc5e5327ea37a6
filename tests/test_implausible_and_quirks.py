"""Implausible readings are kept flagged, apart from the truth (real influxd through an outage and the
spool, and the SQLite sink): queryable as ``implausible``, absent from the metric's data, ignored by
threshold rules. Profile quirks (a firmware swapping temperature and humidity, one reporting CO2 ×10)
are fixed before the plausibility check; their schema errors are precise."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from alerting.thresholds import InfluxWindowSource, SqliteWindowSource, influx_last_seen, sqlite_last_seen
from anxin.model import EventType, Quality, Reading
from gateway.decoder import CompiledProfile, Decoded
from gateway.profile_schema import DeviceProfile
from gateway.sinks.influx import InfluxSink
from gateway.sinks.line_protocol import encode
from gateway.sinks.sqlite_sink import SqliteSink
from program.cli import EXIT_BAD_PROFILES
from tests.harness import wait_for
from tests.servers.influxdb import InfluxServer
from tests.test_cli import anxin


def batch(now: datetime) -> list[Reading]:
    """One CO2 sensor that works and one that reads 65 000 ppm (broken), as the decoder flags them."""
    return [
        Reading("air-1", "co2", 900.0, now - timedelta(seconds=30), "xm-001"),
        Reading("air-1", "co2", 950.0, now - timedelta(seconds=20), "xm-001"),
        Reading("air-2", "co2", 65000.0, now - timedelta(seconds=20), "xm-001", Quality.IMPLAUSIBLE),
        Reading("air-2", "humidity", 180.0, now - timedelta(seconds=10), "xm-001", Quality.IMPLAUSIBLE),
    ]


def test_line_protocol_puts_implausible_values_apart() -> None:
    ts = datetime(2024, 5, 1, tzinfo=UTC)
    body = encode([Reading("a b", "co2", 120.0, ts, "xm-001", Quality.IMPLAUSIBLE),
                   Reading("a b", "co2", 420.0, ts, "xm-001")])
    assert body.decode().splitlines() == [
        "implausible,device_id=a\\ b,institution_id=xm-001,metric=co2 value=120.0 1714521600000000000",
        "co2,device_id=a\\ b,institution_id=xm-001 value=420.0 1714521600000000000"]


def test_influx_keeps_implausible_values_flagged_through_the_spool(tmp_path: Path, influx: InfluxServer) -> None:
    influx.stop()  # the batch goes through the spool and its replay
    sink = InfluxSink(influx.url, "anxin", spool_dir=tmp_path, backoff_s=0.02, max_backoff_s=0.2, max_attempts=2,
                      timeout=3.0)
    try:
        sink.write(batch(datetime.now(UTC)))
        assert sink.batches_spooled == 1
        influx.start()
        wait_for(lambda: sink.spool_segments == 0, timeout=15, what="replay")
        assert sink.batches_rejected == 0
    finally:
        sink.close()
    flagged = influx.query("anxin", "SELECT value, device_id, institution_id, metric FROM implausible")
    assert sorted((r["device_id"], r["metric"], r["value"]) for r in flagged) == [
        ("air-2", "co2", 65000.0), ("air-2", "humidity", 180.0)]
    assert {r["institution_id"] for r in flagged} == {"xm-001"}
    co2 = influx.query("anxin", "SELECT value, device_id FROM co2")
    assert [(r["device_id"], r["value"]) for r in co2] == [("air-1", 900.0), ("air-1", 950.0)]
    assert influx.query("anxin", "SELECT value FROM humidity") == []
    # Threshold rules read the metric's measurement: the broken sensor's 65 000 ppm is not a breach.
    source = InfluxWindowSource(influx.url, "anxin")
    assert source.stat("co2", "max", 3600) == {"air-1": (950.0, 2)}
    # ... but the device did report: it is not silent (offline detection).
    assert set(influx_last_seen(source, 3600)) == {"air-1", "air-2"}


def test_sqlite_keeps_implausible_values_flagged(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.db"
    sink = SqliteSink(path)
    sink.write([*batch(datetime.now(UTC)), Reading("air-3", "co2", float("inf"), datetime.now(UTC),
                                                   quality=Quality.IMPLAUSIBLE)])
    assert sink.points_written == 4  # infinity cannot be kept (as in InfluxDB): its fault event has it
    sink.close()

    with sqlite3.connect(path) as db:
        assert db.execute("SELECT device_id, metric, value FROM readings ORDER BY ts_ns").fetchall() == [
            ("air-1", "co2", 900.0), ("air-1", "co2", 950.0)]
        assert db.execute("SELECT device_id, institution_id, metric, value FROM implausible_readings "
                          "ORDER BY ts_ns").fetchall() == [
            ("air-2", "xm-001", "co2", 65000.0), ("air-2", "xm-001", "humidity", 180.0)]
    source = SqliteWindowSource(path)
    assert source.stat("co2", "max", 3600) == {"air-1": (950.0, 2)}
    assert set(sqlite_last_seen(source, 3600)) == {"air-1", "air-2"}


# -- quirks -------------------------------------------------------------------------------------------

PROFILE = """
name: acme-air
description: ACME classroom air monitor (T/H/CO2)
kind: env_monitor
topic: "acme/{device}"
device_id: {topic: device}
readings:
  - {metric: temperature, path: temp}
  - {metric: humidity, path: hum}
  - {metric: co2, path: co2}
  - {metric: battery, path: bat}
quirks:
  - when: {path: fw_ver, in: ["1.2.0", "1.2.1"]}
    note: firmware 1.2.0 and 1.2.1 send temperature in hum and humidity in temp (fixed in 1.2.2)
    swap: [temperature, humidity]
  - when: {path: fw_ver, equals: "2.0.1"}
    note: firmware 2.0.1 reports CO2 in tenths of a ppm
    scale: {co2: 0.1}
  - when: {path: model, equals: ACME-2-OLD}
    offset: {temperature: -1.5}
"""


def compiled(text: str = PROFILE) -> CompiledProfile:
    return CompiledProfile(DeviceProfile.model_validate(yaml.safe_load(text)))


def decode(payload: dict[str, Any]) -> Decoded:
    return compiled().decode(payload, "room-1", datetime.now(UTC), "xm-001")


def values(d: Decoded) -> dict[str, float]:
    return {r.metric: r.value for r in d.readings}


def test_swapped_temperature_and_humidity_are_fixed_before_the_range_check() -> None:
    # A fridge-side sensor at -5 °C and 80 %RH: the faulty firmware says humidity -5, temperature 80.
    payload = {"fw_ver": "1.2.0", "temp": 80.0, "hum": -5.0, "co2": 650, "bat": 90}
    fixed = decode(payload)
    assert values(fixed) == {"temperature": -5.0, "humidity": 80.0, "co2": 650.0, "battery": 90.0}
    assert fixed.events == [] and fixed.implausible == []
    # The same numbers from a firmware without the quirk: humidity -5 is a broken sensor.
    correct_fw = decode({**payload, "fw_ver": "1.2.2"})
    assert values(correct_fw) == {"temperature": 80.0, "co2": 650.0, "battery": 90.0}
    [fault] = correct_fw.events
    assert fault.type is EventType.SENSOR_FAULT and fault.detail["metric"] == "humidity"
    assert [(r.metric, r.value, r.quality) for r in correct_fw.implausible] == [
        ("humidity", -5.0, Quality.IMPLAUSIBLE)]
    # Only one of the two fields sent: the value still lands on the metric it really is.
    assert values(decode({"fw_ver": "1.2.1", "hum": 21.5})) == {"temperature": 21.5}


def test_co2_times_ten_is_scaled_back() -> None:
    # 5 000 ppm (a crowded room, a real alarm) reported as 50 000: out of range unless fixed.
    fixed = decode({"fw_ver": "2.0.1", "co2": 50000, "temp": 24.0})
    assert values(fixed) == {"co2": 5000.0, "temperature": 24.0} and fixed.events == []
    unfixed = decode({"fw_ver": "2.0.2", "co2": 50000, "temp": 24.0})
    assert values(unfixed) == {"temperature": 24.0}
    assert [e.detail["metric"] for e in unfixed.events] == ["co2"]
    # A fixed value is still range-checked: 500 000 / 10 is still impossible.
    still_bad = decode({"fw_ver": "2.0.1", "co2": 500000})
    assert values(still_bad) == {} and [r.value for r in still_bad.implausible] == [50000.0]


def test_offset_and_garbage_under_a_quirk() -> None:
    assert values(decode({"model": "ACME-2-OLD", "temp": 23.0})) == {"temperature": 21.5}
    # Garbage in the swapped field is still reported as garbage, against the field that holds it.
    d = decode({"fw_ver": "1.2.0", "temp": "banana", "hum": 22.0})
    assert values(d) == {"temperature": 22.0}
    assert [e.detail.get("field") for e in d.events] == ["temp"]


@pytest.mark.parametrize(("quirk", "error"), [
    ({"swap": ["temperature", "humidity"]}, r"quirks\.0\.when\s+Field required"),
    ({"when": {"path": "fw_ver", "equals": "1"}}, "a quirk needs swap, scale or offset"),
    ({"when": {"path": "fw_ver", "equals": "1"}, "swap": ["temperature"]}, "swap takes two different metrics"),
    ({"when": {"path": "fw_ver", "equals": "1"}, "swap": ["co2", "co2"]}, "swap takes two different metrics"),
    ({"when": {"path": "fw_ver", "equals": "1"}, "scale": {"co3": 0.1}}, "unknown metric 'co3'"),
    ({"when": {"path": "fw_ver", "equals": "1"}, "scale": {"co2": 0}}, "quirk scale of co2 is 0"),
    ({"when": {"path": "fw_ver", "equals": "1"}, "offset": {"pm25": 1}},
     r"quirks\[0\] names pm25, which no reading of this profile yields"),
    ({"when": {"path": "fw_ver"}, "scale": {"co2": 0.1}}, "exactly one of: equals, in, present, contains"),
    ({"when": {"path": "fw_ver", "equals": "1"}, "swap": ["temperature", "humidity"], "fix": 1},
     r"quirks\.0\.fix\s+Extra inputs are not permitted"),
])
def test_quirk_schema_errors_are_precise(quirk: dict[str, Any], error: str) -> None:
    doc = yaml.safe_load(PROFILE)
    doc["quirks"] = [quirk]
    with pytest.raises(ValidationError, match=error):
        DeviceProfile.model_validate(doc)


def test_quirks_from_a_profile_file_with_anxin_decode(tmp_path: Path) -> None:
    """As a user checks a profile: the file loaded from disk, a bad quirk a one-line error."""
    (tmp_path / "acme-air.yaml").write_text(PROFILE, encoding="utf-8")
    out = anxin("decode", "--profiles", str(tmp_path), "--topic", "acme/room-1",
                "--payload", '{"fw_ver": "2.0.1", "co2": 50000, "temp": 80.0, "hum": -5.0}')
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert {x["metric"]: x["value"] for x in lines if x["kind"] == "reading"} == {"co2": 5000.0, "temperature": 80.0}
    assert [x["detail"]["metric"] for x in lines if x["kind"] == "event"] == ["humidity"]  # 2.0.1 does not swap

    (tmp_path / "acme-air.yaml").write_text(PROFILE.replace("scale: {co2: 0.1}", "scale: {pm25: 0.1}"),
                                            encoding="utf-8")
    out = anxin("decode", "--profiles", str(tmp_path), "--topic", "acme/room-1", "--payload", "{}")
    assert out.returncode == EXIT_BAD_PROFILES
    assert "acme-air.yaml" in out.stderr and "quirks[1] names pm25" in out.stderr
    assert "Traceback" not in out.stderr
