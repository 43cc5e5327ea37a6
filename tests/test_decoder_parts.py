"""The small parts every profile relies on: paths, topic templates, value coercion, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.paths import MISSING, PathError, parse_path, resolve
from gateway.timestamps import parse_timestamp, trusted
from gateway.topics import compile_template
from gateway.values import converter, normalize, to_number

SH = ZoneInfo("Asia/Shanghai")


def test_paths_with_dots_colons_and_indexes() -> None:
    assert parse_path('SDS0X1["PM2.5"]') == ("SDS0X1", "PM2.5")
    assert parse_path('params["temperature:0"].tC') == ("params", "temperature:0", "tC")
    assert parse_path("rxInfo[0].rssi") == ("rxInfo", 0, "rssi")
    doc = {"params": {"temperature:0": {"tC": 19.0}}, "rxInfo": [{"rssi": -35}], "n": None}
    assert resolve(doc, parse_path('params["temperature:0"].tC')) == 19.0
    assert resolve(doc, parse_path("rxInfo[0].rssi")) == -35
    assert resolve(doc, parse_path("rxInfo[3].rssi")) is MISSING
    assert resolve(doc, parse_path("n")) is None
    assert resolve(doc, parse_path("n.x")) is MISSING


@pytest.mark.parametrize("bad", ["", "a..b", ".a", "a.", 'a["x"b', "a[x]"])
def test_bad_paths_are_refused(bad: str) -> None:
    with pytest.raises(PathError):
        parse_path(bad)


def test_topic_template_keeps_friendly_names_whole() -> None:
    t = compile_template("zigbee2mqtt/{device}")
    assert t.subscription == "zigbee2mqtt/+"
    assert t.match("zigbee2mqtt/Kühlschrank Küche") == {"device": "Kühlschrank Küche"}
    assert t.match("zigbee2mqtt/bridge/state") is None
    multi = compile_template("site/{+rest}")
    assert multi.subscription == "site/#" and multi.match("site/a/b") == {"rest": "a/b"}
    with pytest.raises(ValueError):
        compile_template("a/{+x}/b")
    with pytest.raises(ValueError):
        compile_template("a/+/b")


def test_values_arriving_as_strings_or_null() -> None:
    assert to_number("100.00") == 100.0 and to_number(None) is None and to_number(True) is None
    assert to_number("nan") is None and to_number("abc") is None
    assert normalize("true") is True and normalize("FALSE") is False and normalize("7") == 7.0
    assert normalize("Emergency") == "emergency"


def test_unit_conversions() -> None:
    f2c = converter("°F", "°C")
    assert f2c is not None and f2c(212.0) == pytest.approx(100.0)
    ug = converter("ug/m3", "mg/m³")
    assert ug is not None and ug(80.0) == pytest.approx(0.08)
    assert converter("ppm", "°C") is None


def test_timestamps_in_their_many_shapes() -> None:
    utc = datetime(2019, 11, 10, 13, 43, 9, 829000, tzinfo=UTC)
    assert parse_timestamp(1573393389829, "auto", SH) == utc
    assert parse_timestamp("1573393389.829", "auto", SH) == utc
    assert parse_timestamp("2026-04-17T23:33:22+08:00", "auto", SH) == datetime(2026, 4, 17, 15, 33, 22, tzinfo=UTC)
    # Tasmota: local time without offset
    assert parse_timestamp("2024-12-22T14:03:05", "auto", SH) == datetime(2024, 12, 22, 6, 3, 5, tzinfo=UTC)
    assert parse_timestamp("20170214T170220Z", "auto", SH) == datetime(2017, 2, 14, 17, 2, 20, tzinfo=UTC)
    assert parse_timestamp("yesterday", "auto", SH) is None and parse_timestamp(None, "auto", SH) is None


def test_implausible_device_clock_falls_back_to_receipt() -> None:
    now = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    assert trusted(now - timedelta(minutes=3), now) == now - timedelta(minutes=3)
    assert trusted(datetime(2000, 1, 1, tzinfo=UTC), now) == now
    assert trusted(now + timedelta(hours=1), now) == now
