"""Device families beyond LoRaWAN (zigbee2mqtt under any base_topic, Tasmota sensors and Zigbee bridge,
Shelly Gen1, NB-IoT platform frames): every documented vendor example in tests/fixtures/profile_examples.json
(source named per entry), and a held-out set of real captures of devices no profile names
(tests/fixtures/held_out_captures.json) that must decode to the right meaning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.decoder import DecodeError
from gateway.profiles import NoProfileError
from tests.profile_helpers import Result, decode, profile_set

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES: list[dict[str, Any]] = json.loads((FIXTURES / "profile_examples.json").read_text(encoding="utf-8"))
HELD_OUT: list[dict[str, Any]] = json.loads((FIXTURES / "held_out_captures.json").read_text(encoding="utf-8"))


def _decode(entry: dict[str, Any]) -> Result:
    profile = entry["expected"]["profile"] if entry.get("force_profile") else None
    return decode(entry["topic"], entry["payload_text"], profile=profile, assigned=entry.get("assigned"))


def _values_by_device(r: Result) -> dict[str, float]:
    """metric -> value for the message's own device; "<device>:<metric>" for readings of sub-devices."""
    out: dict[str, float] = {}
    for x in r.readings:
        key = x.metric if x.device_id == r.device_id else f"{x.device_id}:{x.metric}"
        assert key not in out, f"{key} twice in one message"
        out[key] = x.value
    return out


@pytest.mark.parametrize("entry", EXAMPLES, ids=[e["id"] for e in EXAMPLES])
def test_vendor_example(entry: dict[str, Any]) -> None:
    assert entry["source"], "every example names its source"
    exp = entry["expected"]
    r = _decode(entry)
    assert r.profile == exp["profile"]
    assert sorted([list(s) for s in r.states]) == exp["states"]
    if "device_id" in exp:
        assert r.device_id == exp["device_id"]
    if "values" in exp:
        got = _values_by_device(r)
        assert {k: got.get(k) for k in exp["values"]} == pytest.approx(exp["values"], abs=1e-3)


def meaning(r: Result) -> tuple[str, str | None]:
    """What a message means for the people watching: an alarm (or its clear), a test, a fault, a reading."""
    active = [e.type.value for e in r.events if e.state.value == "active"]
    clear = [e.type.value for e in r.events if e.state.value == "clear"]
    for kind, pool in (("alarm", active), ("test", active), ("fault", active), ("clear", clear)):
        hits = [t for t in pool if t.split(".")[0] == ("alarm" if kind == "clear" else kind)]
        if hits:
            return kind, hits[0]
    return ("reading", None) if r.readings else ("nothing", None)


def _held_out_right(entry: dict[str, Any]) -> bool:
    exp = entry["expected"]
    try:
        r = _decode(entry)
    except (NoProfileError, DecodeError):
        return False
    kind, event = meaning(r)
    if kind != exp["meaning"]:
        return False
    if "event" in exp and event != exp["event"]:
        return False
    if "metric" in exp:
        values = _values_by_device(r)
        return exp["metric"] in values and values[exp["metric"]] == pytest.approx(exp["value"])
    return True


def test_held_out_captures_decode_to_the_right_meaning() -> None:
    named = {m.casefold() for p in profile_set().by_name.values() for m in p.spec.models}
    for e in HELD_OUT:
        assert e["source"], e["id"]
        clash = [m for m in named if len(m) > 3 and m in e["device"].casefold()]
        assert not clash, f"{e['id']}: device is named by a profile ({clash})"
    right = [e["id"] for e in HELD_OUT if _held_out_right(e)]
    wrong = sorted({e["id"] for e in HELD_OUT} - set(right))
    print(f"held-out captures decoded to the right meaning: {len(right)}/{len(HELD_OUT)}; wrong: {wrong}")
    assert len(HELD_OUT) >= 10
    assert len(right) * 10 >= len(HELD_OUT) * 9, wrong


def test_meaning_classifier_is_not_vacuous() -> None:
    """The held-out count relies on meaning(): check it tells the classes apart."""
    assert meaning(decode("zigbee2mqtt/a", '{"smoke":true}')) == ("alarm", "alarm.smoke")
    assert meaning(decode("zigbee2mqtt/a", '{"smoke":false}')) == ("clear", "alarm.smoke")
    assert meaning(decode("zigbee2mqtt/a", '{"smoke":true,"test":true}')) == ("test", "test")
    assert meaning(decode("zigbee2mqtt/a", '{"temperature":20.5}')) == ("reading", None)
    assert meaning(decode("zigbee2mqtt/a", '{"smoke":false,"battery_low":true}')) == ("fault", "fault.battery_low")


# -- behaviours the examples do not pin down ---------------------------------------------------------------
def test_any_base_topic_and_the_default_bridge_keeps_its_id() -> None:
    assert decode("zigbee2mqtt/bridge/state", "offline").device_id == "zigbee2mqtt-bridge"
    assert decode("site-b/bridge/state", "offline").states == [("device.offline", "active")]
    assert decode("site-b/bridge/state", "offline").device_id == "site-b"
    r = decode("home_z2m/nap room smoke", '{"smoke":true,"battery":90}')
    assert (r.profile, r.device_id, r.states[0]) == ("zigbee2mqtt-smoke", "nap room smoke", ("alarm.smoke", "active"))


def test_a_plain_button_action_is_no_panic_without_the_model_or_an_assignment() -> None:
    payload = '{"action":"single","battery":100,"device":{"model":"WXKG01LM"}}'
    assert not [e for e in decode("zigbee2mqtt/light switch", payload).events if e.type.value == "alarm.panic"]


def test_gas_self_test_is_a_test_not_a_gas_alarm() -> None:
    r = decode("zigbee2mqtt/kitchen gas", '{"gas":true,"test":true,"battery_low":false,"tamper":false}')
    assert ("test", "active") in r.states and not [s for s in r.states if s[0] == "alarm.gas"]


def test_tasmota_several_drivers_one_value_per_metric() -> None:
    r = decode("tele/lab/SENSOR", '{"Time":"2024-12-22T14:03:05","SCD30":{"CarbonDioxide":600,"Temperature":26.0,'
                                  '"Humidity":40},"BME280":{"Temperature":22.0,"Humidity":45,"Pressure":1010},"TempUnit":"C"}')
    assert r.values == {"co2": 600, "temperature": 22.0, "humidity": 45, "pressure": 1010}


def test_tasmota_probe_without_id_keeps_its_index() -> None:
    r = decode("tele/cold/SENSOR", '{"DS18B20-1":{"Temperature":3.5},"DS18B20-2":{"Temperature":-18.0},"TempUnit":"C"}')
    assert {(x.device_id, x.value) for x in r.readings} == {("cold/DS18B20-1", 3.5), ("cold/DS18B20-2", -18.0)}


def test_tasmota_eco2_is_not_co2() -> None:
    r = decode("tele/voc/SENSOR", '{"CCS811":{"eCO2":450,"TVOC":12},"TempUnit":"C"}')
    assert r.values == {"tvoc_ppb": 12}


def test_tasmota_zigbee_device_id_falls_back_to_the_short_address() -> None:
    r = decode("tele/zb/SENSOR", '{"ZbReceived":{"0x1067":{"Device":"0x1067","Temperature":19.04,"Humidity":70.89,'
                                 '"Endpoint":1,"LinkQuality":141}}}')
    assert r.device_id == "zb/0x1067" and r.values == {"temperature": 19.04, "humidity": 70.89, "linkquality": 141}


def test_tasmota_zigbee_generic_zone_is_not_guessed_to_be_a_panic() -> None:
    r = decode("tele/zb/SENSOR", '{"ZbReceived":{"0x5A1C":{"Device":"0x5A1C","ZoneStatusChange":1}}}')
    assert r.profile == "tasmota-zigbee" and not [e for e in r.events if e.state.value == "active"]


def test_shelly_gen1_announce_is_recognised_and_ignored() -> None:
    r = decode("shellies/announce", '{"id":"shellyht-3CBD1F","model":"SHHT-1","mac":"AABBCC3CBD1F","ip":"10.0.0.5"}')
    assert r.profile == "shelly-gen1-announce" and r.events == [] and r.readings == []


def test_nb301_old_single_digit_heat_code_is_a_fire() -> None:
    nb301 = next(e for e in EXAMPLES if e["id"] == "oceanconnect-nb301-alarm")
    text = nb301["payload_text"].replace("X01T28", "X2T28")  # 55-character frame of the older firmware
    r = decode("http", text, profile="oceanconnect-wanlin-nb301")
    assert r.states == [("alarm.smoke", "active")]


# -- malformed frames are dead letters with a reason, never a crash -------------------------------------------
@pytest.mark.parametrize(("profile", "payload", "reason"), [
    ("ctwing-huaqiang-smoke", '{"IMEI":"1","payload":{"APPdata":"not base64!"}}', "bad base64"),
    ("ctwing-huaqiang-smoke", '{"IMEI":"1","payload":{"APPdata":"EAovCA=="}}', "need 44"),
    ("ctwing-infotrans", '{"deviceId":"1","payload":{"APPdata":"W10="}}', "not an object"),
    ("oceanconnect-wanlin-nb301", '{"deviceId":"d","service":{"data":{"Data":"X1X2"}}}', "twice"),
    ("oceanconnect-wanlin-nb301", '{"deviceId":"d","service":{"data":{"Data":"311"}}}', "field letter"),
])
def test_malformed_nbiot_frames(profile: str, payload: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode("http", payload, profile=profile)


# -- the decoder parts these families added ----------------------------------------------------------------
def test_star_path_segment() -> None:
    from gateway.paths import MISSING, parse_path, resolve

    p = parse_path("ZbReceived.*.ZoneStatus")
    assert resolve({"ZbReceived": {"0x1A2B": {"ZoneStatus": 5}}}, p) == 5
    assert resolve({"ZbReceived": {}}, p) is MISSING
    assert resolve({"ZbReceived": {"*": {"ZoneStatus": 1}}}, p) == 1  # a literal "*" key still wins
    assert resolve({"ZbReceived": [1]}, p) is MISSING


def test_mask_rule_validation() -> None:
    from pydantic import ValidationError

    from anxin.model import EventType
    from gateway.profile_schema import EventSpec

    assert EventSpec(type=EventType.TAMPER, path="z", mask=4).mask == 4
    with pytest.raises(ValidationError, match="one of"):
        EventSpec(type=EventType.TAMPER, path="z", mask=4, active=[1])
    with pytest.raises(ValidationError):
        EventSpec(type=EventType.TAMPER, path="z", mask=0)


def test_tasmota_two_sht3x_are_two_devices() -> None:
    r = decode("tele/t/SENSOR", '{"SHT3X-0x44":{"Temperature":22.1,"Humidity":57.5},'
                                '"SHT3X-0x45":{"Temperature":5.0,"Humidity":80},"TempUnit":"C"}')
    assert {(x.device_id, x.metric, x.value) for x in r.readings} == {
        ("t/SHT3X-0x44", "temperature", 22.1), ("t/SHT3X-0x44", "humidity", 57.5),
        ("t/SHT3X-0x45", "temperature", 5.0), ("t/SHT3X-0x45", "humidity", 80)}
