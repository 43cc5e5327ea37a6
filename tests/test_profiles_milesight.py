"""Milesight codecs and ChirpStack v4 profiles against the vendor-documented samples."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.codecs import CodecError, get_codec
from gateway.decoder import DecodeError
from tests.profile_helpers import decode
from tests.samples import samples

S = samples()
TOPIC = "application/app1/device/24e124000000aa01/event/up"
SAMPLE_TIME = datetime(2023, 5, 22, 7, 47, 30, tzinfo=UTC)


def without_msgid(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (without_msgid(v) if isinstance(v, dict) else v) for k, v in d.items() if k != "msgid"}


@pytest.mark.parametrize(("sid", "codec"), [
    ("ms-ws101-sos-short-press", "milesight_ws101"), ("ms-gs524n-test-alarm", "milesight_gs524n"),
    ("ms-ws303-leak", "milesight_ws303"), ("cs-ws101-sos", "milesight_ws101"),
    ("cs-gs101-gas-normal", "milesight_gs101"), ("cs-am319-air", "milesight_am319"),
    ("cs-em300-th", "milesight_em300_th"),
])
def test_codec_matches_vendor_decoder(sid: str, codec: str) -> None:
    s = S[sid]
    raw = bytes.fromhex(s.get("payload_hex") or s["inner_payload_hex"])
    if "payload_text" in s:  # the ChirpStack envelope carries the same bytes in base64
        assert base64.b64decode(json.loads(s["payload_text"])["data"]) == raw
    assert get_codec(codec)(raw) == without_msgid(s["expected"])


def test_ws101_press_is_a_panic_raw_and_in_chirpstack_envelope() -> None:
    raw = decode(TOPIC, bytes.fromhex(S["ms-ws101-sos-short-press"]["payload_hex"]), profile="milesight-ws101",
                 raw_bytes=True)
    assert raw.device_id == "24e124000000aa01"
    assert raw.states == [("alarm.panic", "active"), ("fault.battery_low", "active")]
    assert raw.values == {"battery": 16}
    cs = decode(S["cs-ws101-sos"]["topic"], S["cs-ws101-sos"]["payload_text"], received_at=SAMPLE_TIME)
    assert (cs.profile, cs.device_id) == ("milesight-ws101", "1000000000000001")
    assert cs.states == raw.states
    assert cs.values == {"battery": 16, "rssi": -35, "snr": 11.5}
    assert cs.events[0].ts == datetime(2023, 5, 22, 7, 47, 5, 404859, tzinfo=UTC)  # network server time


def test_ws101_double_press_is_a_test_not_a_panic() -> None:
    r = decode(TOPIC, bytes.fromhex("017564FF2E03"), profile="milesight-ws101", raw_bytes=True)
    assert r.states == [("test", "active"), ("fault.battery_low", "clear")]


def test_gs524n_test_alarm_is_never_a_fire() -> None:
    r = decode(TOPIC, bytes.fromhex(S["ms-gs524n-test-alarm"]["payload_hex"]), profile="milesight-gs524n",
               raw_bytes=True)
    assert r.states == [("test", "active")]
    assert r.values == {"battery": 100, "temperature": 28}


def _gs524n(message_type: int) -> bytes:
    frame = bytearray([0x22, 0x10 | message_type, 0x64, 0x00, 0x1C, 0x00])
    frame[5] = (-sum(frame)) % 256
    return bytes(frame)


@pytest.mark.parametrize(("message", "expected"), [
    (0x01, [("alarm.smoke", "active")]), (0x07, [("alarm.smoke", "clear")]), (0x02, []),
    (0x04, [("fault.battery_low", "active")]), (0x05, [("fault.sensor", "active")]),
    (0x0A, [("fault.tamper", "active")]), (0x0B, [("fault.tamper", "clear")]),
    (0x0F, [("test", "active"), ("fault.battery_low", "active")]),
])
def test_gs524n_message_types(message: int, expected: list[tuple[str, str]]) -> None:
    r = decode(TOPIC, _gs524n(message), profile="milesight-gs524n", raw_bytes=True)
    assert r.states == expected


def test_gs524n_bad_checksum_is_refused() -> None:
    bad = bytes.fromhex("221E64001C41")
    with pytest.raises(CodecError, match="checksum"):
        get_codec("milesight_gs524n")(bad)
    with pytest.raises(DecodeError, match="checksum"):
        decode(TOPIC, bad, profile="milesight-gs524n", raw_bytes=True)


def test_ws303_leak() -> None:
    r = decode(TOPIC, bytes.fromhex(S["ms-ws303-leak"]["payload_hex"]), profile="milesight-ws303", raw_bytes=True)
    assert r.states == [("alarm.water_leak", "active"), ("fault.battery_low", "clear")]
    assert decode(TOPIC, bytes.fromhex("017564030000"), profile="milesight-ws303",
                  raw_bytes=True).states[0] == ("alarm.water_leak", "clear")


def test_gs101_gas_normal_in_envelope() -> None:
    r = decode(S["cs-gs101-gas-normal"]["topic"], S["cs-gs101-gas-normal"]["payload_text"])
    assert r.profile == "milesight-gs101"
    assert r.states == [("alarm.gas", "clear")]
    assert r.events[0].detail["valve"] == "on"
    alarm = decode(TOPIC, bytes.fromhex("058E01"), profile="milesight-gs101", raw_bytes=True)
    assert alarm.states == [("alarm.gas", "active")]


def test_am319_readings_in_canonical_units() -> None:
    r = decode(S["cs-am319-air"]["topic"], S["cs-am319-air"]["payload_text"])
    assert r.profile == "milesight-am319"
    assert r.values == pytest.approx({"temperature": 23.8, "humidity": 62, "co2": 936, "hcho": 0.04, "pm25": 32,
                                      "pm10": 48, "pressure": 1008.6, "light_level": 2, "battery": 85,
                                      "rssi": -35, "snr": 11.5})
    # the IAQ level on 0x08 0x7D is not a concentration and is not stored as tvoc
    assert "tvoc" not in r.values


def test_am307_is_not_mistaken_for_am319() -> None:
    frame = bytes.fromhex("0175550367EE0004687C077DA803087D25000973662708E69600")
    payload = json.dumps({"time": "2023-05-22T07:47:05+00:00", "data": base64.b64encode(frame).decode()})
    r = decode(TOPIC, payload)
    assert r.profile == "milesight-am307"
    assert r.values == pytest.approx({"temperature": 23.8, "humidity": 62, "co2": 936, "pressure": 1008.6,
                                      "tvoc": 0.15, "battery": 85})


def test_em300_th_in_envelope() -> None:
    r = decode(S["cs-em300-th"]["topic"], S["cs-em300-th"]["payload_text"])
    assert r.profile == "milesight-em300-th"
    assert r.values == {"battery": 92, "temperature": 30.8, "humidity": 50.5, "rssi": -35, "snr": 11.5}


@pytest.mark.parametrize(("hex_frame", "message"), [
    ("0175", "truncated battery"),
    ("017564036701", "truncated temperature"),
    ("0175642099", "unknown channel 0x20 type 0x99"),
    ("01", "truncated frame"),
    ("", "empty frame"),
])
def test_malformed_tlv(hex_frame: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        get_codec("milesight_em300_th")(bytes.fromhex(hex_frame))


def test_bad_base64_in_envelope() -> None:
    with pytest.raises(DecodeError, match="bad base64"):
        decode(TOPIC, '{"data": "not base64!!"}', profile="milesight-em300-th")


def test_same_channel_differs_between_models() -> None:
    """0x03 0x00 is leak status on the WS303; the EM300-TH has no such channel and refuses it."""
    frame = bytes.fromhex("030001")
    assert get_codec("milesight_ws303")(frame) == {"leakage_status": "leak"}
    with pytest.raises(CodecError, match="unknown channel 0x03 type 0x00"):
        get_codec("milesight_em300_th")(frame)
