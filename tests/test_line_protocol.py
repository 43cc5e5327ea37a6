"""Line-protocol encoding: escaping rules, and a round trip of awkward names through a real influxd."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import httpx

from anxin.model import Reading
from gateway.sinks.line_protocol import encode, escape_measurement, escape_tag, tag_set, timestamp_ns
from tests.servers.influxdb import InfluxServer

T0 = datetime(2024, 3, 1, 8, 30, 0, 123456, tzinfo=UTC)
T0_NS = 1709281800123456000


def test_tag_escaping() -> None:
    assert escape_tag("Kühlschrank Küche") == "Kühlschrank\\ Küche"
    assert escape_tag("a,b=c") == "a\\,b\\=c"
    assert escape_tag("plain-id_01") == "plain-id_01"
    assert escape_tag("前台一键报警") == "前台一键报警"
    # backslashes are written as they are (InfluxDB 1.x un-escapes only "\,", "\=" and "\ " in tags) ...
    assert escape_tag("back\\slash") == "back\\slash"
    assert escape_tag("a\\,b") == "a\\\\,b"
    # ... except a trailing one, which would escape the separator after it and break the line
    assert escape_tag("tail\\") == "tail/"
    assert escape_tag("tail\\\\") == "tail/"
    # no escape exists for a newline: it becomes an (escaped) space instead of ending the line
    assert escape_tag("line\nbreak") == "line\\ break"
    assert escape_tag("cr\r\nlf") == "cr\\ \\ lf"


def test_measurement_escaping() -> None:
    assert escape_measurement("temperature") == "temperature"
    assert escape_measurement("air quality,idx") == "air\\ quality\\,idx"
    assert escape_measurement("a=b") == "a=b"  # "=" needs no escape in a measurement


def test_tags_sorted_and_empty_ones_left_out() -> None:
    assert tag_set("dev 1", "inst,1") == ",device_id=dev\\ 1,institution_id=inst\\,1"
    assert tag_set("dev", None) == ",device_id=dev"
    assert tag_set("dev", "") == ",device_id=dev"
    assert tag_set("", "inst") == ",institution_id=inst"
    assert tag_set("dev 1", "inst,1") is tag_set("dev 1", "inst,1")  # cached


def test_encode_lines() -> None:
    body = encode([
        Reading("Kühlschrank Küche", "temperature", 6.75, T0, "xm-001"),
        Reading("x y", "co2", 936.0, T0),  # no institution: the tag is left out
        Reading("x y", "battery", 97, T0, ""),  # an int is still written as a float field
        Reading("x y", "battery", True, T0),  # never as a boolean field
        Reading("x y", "humidity", 1e-7, T0 + timedelta(microseconds=1)),
    ]).decode()
    assert body == (
        f"temperature,device_id=Kühlschrank\\ Küche,institution_id=xm-001 value=6.75 {T0_NS}\n"
        f"co2,device_id=x\\ y value=936.0 {T0_NS}\n"
        f"battery,device_id=x\\ y value=97.0 {T0_NS}\n"
        f"battery,device_id=x\\ y value=1.0 {T0_NS}\n"
        f"humidity,device_id=x\\ y value=1e-07 {T0_NS + 1000}\n"
    )


def test_non_finite_values_are_left_out() -> None:
    body = encode([Reading("d", "temperature", math.nan, T0), Reading("d", "temperature", math.inf, T0),
                   Reading("d", "temperature", -math.inf, T0), Reading("d", "temperature", 1.5, T0)])
    assert body == f"temperature,device_id=d value=1.5 {T0_NS}\n".encode()
    assert encode([]) == b""


def test_timestamps_are_exact_nanoseconds() -> None:
    assert timestamp_ns(T0) == T0_NS
    cst = timezone(timedelta(hours=8))
    assert timestamp_ns(T0.astimezone(cst)) == T0_NS
    assert timestamp_ns(datetime(2038, 1, 19, 3, 14, 8, 999999, tzinfo=UTC)) == 2147483648999999000
    assert timestamp_ns(datetime(1970, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)) == -1000
    # microsecond-exact where float arithmetic (ts.timestamp() * 1e9) would not be
    for us in range(0, 1_000_000, 7919):
        ts = datetime(2026, 11, 23, 6, 0, 0, us, tzinfo=UTC)
        assert timestamp_ns(ts) == (1795413600 * 1_000_000 + us) * 1000


NAMES = [
    "Kühlschrank Küche",
    "a,b=c",
    "x y",
    "=leading equals",
    " leading and trailing space ",
    "back\\slash",
    "a\\,b",
    "a\\ b",
    "a\\=b",
    "前台一键报警",
    "tab\there",
    'quote"d',
    "#hash",
    "комната 1",
]


def test_round_trip_through_influxd(influx: InfluxServer) -> None:
    httpx.post(f"{influx.url}/query", data={"q": 'CREATE DATABASE "lp"'}).raise_for_status()
    institutions = [None, "机构 1", "inst,with=odd chars", ""]
    readings = [Reading(name, "temperature", float(i), T0 + timedelta(seconds=i), institutions[i % 4])
                for i, name in enumerate(NAMES)]
    # names no line protocol can carry verbatim, and what they become
    readings += [Reading("line\nbreak", "temperature", 100.0, T0 + timedelta(seconds=100), "inst\nnl"),
                 Reading("tail\\", "temperature", 101.0, T0 + timedelta(seconds=101), None)]
    readings.append(Reading("dev", "air quality,idx", 7.0, T0))
    resp = httpx.post(f"{influx.url}/write", params={"db": "lp", "precision": "ns"}, content=encode(readings))
    assert resp.status_code == 204, resp.text

    rows = influx.query("lp", "SELECT value, device_id, institution_id FROM temperature", epoch="ns")
    got = {int(r["value"]): (r["device_id"], r["institution_id"], r["time"]) for r in rows}
    expected = {i: (name, institutions[i % 4] or None, T0_NS + i * 10**9) for i, name in enumerate(NAMES)}
    expected[100] = ("line break", "inst nl", T0_NS + 100 * 10**9)
    expected[101] = ("tail/", None, T0_NS + 101 * 10**9)
    assert got == expected

    odd = influx.query("lp", 'SELECT value, device_id FROM "air quality,idx"')
    assert [(r["device_id"], r["value"]) for r in odd] == [("dev", 7)]
    # the tag values are exact series keys, so a WHERE on the original name finds the point
    fridge = influx.query("lp", "SELECT value FROM temperature WHERE device_id = 'Kühlschrank Küche'")
    assert [r["value"] for r in fridge] == [0]
