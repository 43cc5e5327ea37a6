"""Every JSON device profile against the public real-format samples (tests/fixtures, sources named there)
and the traps their notes describe."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.decoder import DecodeError
from gateway.profiles import NoProfileError
from tests.profile_helpers import decode, profile_set
from tests.samples import samples

S = samples()


def sample(sid: str) -> tuple[str, str]:
    return S[sid]["topic"], S[sid]["payload_text"]


def test_every_shipped_profile_loads() -> None:
    names = set(profile_set().by_name)
    assert {"zigbee2mqtt-smoke", "zigbee2mqtt-sos-button", "zigbee2mqtt-gas", "zigbee2mqtt-water-leak",
            "zigbee2mqtt-door", "zigbee2mqtt-air-quality", "zigbee2mqtt-temp-humidity", "zigbee2mqtt-fridge",
            "zigbee2mqtt-availability", "zigbee2mqtt-bridge", "tasmota-sensor", "shelly-gen2-ht",
            "shelly-gen2-smoke", "ctwing-lian-smoke", "oceanconnect-wanlin-smoke", "wanlin-alarm-host",
            "generic-json"} <= names


# -- zigbee2mqtt --------------------------------------------------------------------------------------
def test_z2m_sos_press_is_a_panic() -> None:
    r = decode(*sample("z2m-tuya-sos-emergency"))
    assert r.profile == "zigbee2mqtt-sos-button" and r.device_id == "0xa4c13899607febd1"
    assert r.states == [("alarm.panic", "active"), ("fault.battery_low", "clear")]
    assert r.values == {"battery": 100, "linkquality": 18}
    # last_seen "2026-04-17T23:33:22+08:00" is device time; trusted when plausible
    r = decode(*sample("z2m-tuya-sos-emergency"), received_at=datetime(2026, 4, 17, 15, 34, tzinfo=UTC))
    assert r.events[0].ts == datetime(2026, 4, 17, 15, 33, 22, tzinfo=UTC)


@pytest.mark.parametrize("action", ["null", '""', '"single"'])
def test_z2m_sos_idle_or_other_action_never_raises_a_panic(action: str) -> None:
    r = decode("zigbee2mqtt/0xa4c13899607febd1", f'{{"action":{action},"battery":100,"linkquality":14}}')
    assert r.profile == "zigbee2mqtt-sos-button"
    assert not [e for e in r.events if e.type.value == "alarm.panic"]


def test_z2m_idle_sample_is_a_heartbeat() -> None:
    r = decode(*sample("z2m-tuya-sos-idle"))
    assert r.states == [("fault.battery_low", "clear")] and r.values["battery"] == 100


def test_z2m_smoke_alarm_and_clear() -> None:
    r = decode(*sample("z2m-xiaomi-smoke-true"))
    assert ("alarm.smoke", "active") in r.states
    assert r.values == {"battery": 100, "voltage": 3.195, "linkquality": 57}
    r = decode("zigbee2mqtt/heiman_smoke", S["z2m-heiman-smoke-clear"]["payload_text"])
    assert r.profile == "zigbee2mqtt-smoke"
    assert sorted(r.states) == [("alarm.smoke", "clear"), ("fault.battery_low", "clear")]


def test_z2m_gas_leak_with_spaces_in_the_name() -> None:
    r = decode(*sample("z2m-xiaomi-gas-true"))
    assert r.device_id == "sensore perdita gas" and r.profile == "zigbee2mqtt-gas"
    assert sorted(r.states) == [("alarm.gas", "active"), ("fault.battery_low", "clear"), ("fault.tamper", "clear")]
    assert r.values["gas_density"] == 237


def test_z2m_contact_false_means_open() -> None:
    r = decode(*sample("z2m-aqara-door-open"))
    assert r.profile == "zigbee2mqtt-door" and ("alarm.door", "active") in r.states
    assert "temperature" not in r.values  # the chip's temperature is not the room's
    r = decode(*sample("z2m-xiaomi-door-closed"))
    assert ("alarm.door", "clear") in r.states


def test_z2m_water_leak() -> None:
    r = decode("zigbee2mqtt/kitchen leak", '{"water_leak":true,"battery":"91","battery_low":false}')
    assert r.profile == "zigbee2mqtt-water-leak"
    assert sorted(r.states) == [("alarm.water_leak", "active"), ("fault.battery_low", "clear")]
    assert r.values["battery"] == 91


def test_z2m_air_box_units() -> None:
    r = decode(*sample("z2m-tuya-airbox"))
    assert r.profile == "zigbee2mqtt-air-quality"
    assert r.values == pytest.approx({"co2": 359, "hcho": 0.001, "tvoc_ppb": 14, "humidity": 62.3,
                                      "temperature": 21.1, "linkquality": 84})


def test_z2m_temperature_humidity_auto_selected_not_fridge() -> None:
    r = decode(*sample("z2m-aqara-th-bathroom"))
    assert r.profile == "zigbee2mqtt-temp-humidity"
    assert r.values == pytest.approx({"temperature": 22.4, "humidity": 58.5, "pressure": 1001.8, "battery": 97,
                                      "voltage": 2.995, "linkquality": 72})


def test_z2m_fridge_only_by_assignment() -> None:
    topic, payload = sample("z2m-kitchen-fridge")
    assert decode(topic, payload).profile == "zigbee2mqtt-temp-humidity"
    r = decode(topic, payload, assigned={"Kühlschrank Küche": "zigbee2mqtt-fridge"})
    assert r.profile == "zigbee2mqtt-fridge" and r.device_id == "Kühlschrank Küche"
    assert r.values["temperature"] == 6.75 and r.values["humidity"] == 67.11
    assert decode(topic, payload, profile="zigbee2mqtt-fridge").profile == "zigbee2mqtt-fridge"


def test_z2m_bridge_state_and_device_availability() -> None:
    r = decode(*sample("z2m-bridge-state-online-retained"))
    assert (r.profile, r.device_id, r.states) == ("zigbee2mqtt-bridge", "zigbee2mqtt-bridge",
                                                  [("device.offline", "clear")])
    assert decode("zigbee2mqtt/bridge/state", "offline").states == [("device.offline", "active")]
    r = decode("zigbee2mqtt/door 1/availability", '{"state":"offline"}')
    assert (r.device_id, r.states) == ("door 1", [("device.offline", "active")])
    assert decode("zigbee2mqtt/door 1/availability", "online").states == [("device.offline", "clear")]


def test_z2m_strings_and_nulls() -> None:
    r = decode("zigbee2mqtt/s1", '{"smoke":"true","battery":"100.00","voltage":null,"linkquality":"n/a"}')
    assert r.values == {"battery": 100.0}
    assert ("alarm.smoke", "active") in r.states


# -- Tasmota ------------------------------------------------------------------------------------------
def test_tasmota_co2_and_local_time() -> None:
    received = datetime(2024, 12, 22, 6, 3, 30, tzinfo=UTC)
    r = decode(*sample("tasmota-mhz19b-co2"), received_at=received)
    assert (r.profile, r.device_id) == ("tasmota-sensor", "tasmota_B8CCBC")
    assert r.values == {"co2": 908, "temperature": 32.0}
    assert r.readings[0].ts == datetime(2024, 12, 22, 6, 3, 5, tzinfo=UTC)  # 14:03:05 Asia/Shanghai


def test_tasmota_key_with_a_dot() -> None:
    r = decode(*sample("tasmota-sds011-pm25"))
    assert r.values == {"pm25": 2.1, "pm10": 4.7}


def test_tasmota_fahrenheit() -> None:
    r = decode("tele/lab/SENSOR", '{"Time":"2024-12-22T14:03:05","BME280":{"Temperature":71.6,"Humidity":40,'
                                  '"Pressure":1010.2},"TempUnit":"F"}')
    assert r.values == pytest.approx({"temperature": 22.0, "humidity": 40, "pressure": 1010.2})


# -- Shelly -------------------------------------------------------------------------------------------
def test_shelly_ht_external_power_is_not_low_battery() -> None:
    r = decode(*sample("shelly-plusht-fullstatus"))
    assert (r.profile, r.device_id) == ("shelly-gen2-ht", "shellyplusht-c049ef8bc088")
    assert r.values == {"temperature": 19.0, "humidity": 57.6, "battery": 0, "voltage": 0.43, "rssi": -60}
    assert r.states == []
    on_battery = S["shelly-plusht-fullstatus"]["payload_text"].replace('"present":true', '"present":false')
    assert decode("shellyplusht-c049ef8bc088/events/rpc", on_battery).states == [("fault.battery_low", "active")]


def test_shelly_smoke_clear() -> None:
    r = decode(*sample("shelly-plussmoke-fullstatus"))
    assert (r.profile, r.device_id) == ("shelly-gen2-smoke", "shellyplussmoke-aabbccddeeff00")
    assert sorted(r.states) == [("alarm.smoke", "clear"), ("fault.battery_low", "clear")]
    alarm = S["shelly-plussmoke-fullstatus"]["payload_text"].replace('"alarm":false', '"alarm":true')
    assert ("alarm.smoke", "active") in decode("shellyplussmoke-aabbccddeeff00/events/rpc", alarm).states


# -- NB-IoT platform pushes ----------------------------------------------------------------------------
def test_ctwing_silenced_neither_raises_nor_clears() -> None:
    r = decode("http", S["nb-ctwing-lian-smoke-silenced"]["payload_text"], profile="ctwing-lian-smoke")
    assert r.device_id == "860374051096202"
    assert r.values == {"battery": 100}
    assert r.states == [("fault.battery_low", "clear")]


@pytest.mark.parametrize(("status", "expected"), [
    (1, [("alarm.smoke", "active")]), (7, [("alarm.smoke", "clear")]), (14, [("test", "active")]),
    (10, [("fault.tamper", "active")]), (11, [("fault.tamper", "clear")]), (5, [("fault.sensor", "active")]),
    (4, [("fault.battery_low", "active")]),
])
def test_ctwing_status_codes(status: int, expected: list[tuple[str, str]]) -> None:
    text = S["nb-ctwing-lian-smoke-silenced"]["payload_text"].replace('"Alarm_Status":2', f'"Alarm_Status":{status}')
    r = decode("http", text, profile="ctwing-lian-smoke")
    assert [s for s in r.states if s != ("fault.battery_low", "clear")] == expected


# OceanConnect deviceDataChanged push of a Wanlin NB306 smoke detector: the envelope is Huawei's documented
# notification format; the data fields (devState, electricQuantity, temperature x10, smokescope) are
# those of the vendor's NB306 product model as published in open-source integrations.
OCEANCONNECT = ('{"notifyType":"deviceDataChanged","deviceId":"e917e013-044b-4f32-8b53-588ef68c185a",'
                '"gatewayId":"e917e013-044b-4f32-8b53-588ef68c185a","requestId":null,"service":{"serviceType":'
                '"Report","serviceId":"Report","eventTime":"20200401T182505Z","data":{"devId":"10009305",'
                '"electricQuantity":100,"devState":%d,"temperature":219,"signal":12,"cmdValue":"10",'
                '"smokescope":0}}}')


def test_oceanconnect_smoke() -> None:
    received = datetime(2020, 4, 1, 18, 25, 30, tzinfo=UTC)
    r = decode("http", OCEANCONNECT % 1, profile="oceanconnect-wanlin-smoke", received_at=received)
    assert r.device_id == "e917e013-044b-4f32-8b53-588ef68c185a"
    assert r.states == [("alarm.smoke", "active")]
    assert r.values == pytest.approx({"battery": 100, "temperature": 21.9})
    assert r.events[0].ts == datetime(2020, 4, 1, 18, 25, 5, tzinfo=UTC)
    assert decode("http", OCEANCONNECT % 0, profile="oceanconnect-wanlin-smoke").states == [("alarm.smoke", "clear")]
    assert decode("http", OCEANCONNECT % 5, profile="oceanconnect-wanlin-smoke").states == [("test", "active")]
    assert decode("http", OCEANCONNECT % 3, profile="oceanconnect-wanlin-smoke").states == [("fault.tamper", "active")]


def test_wanlin_host_sos_from_chinese_text() -> None:
    r = decode("http", S["nb-wanlin-host-sos"]["payload_text"], profile="wanlin-alarm-host")
    assert r.device_id == "868000000001003196"
    assert r.states == [("alarm.panic", "active")]
    assert r.events[0].detail["zone"] == "251"
    tamper = S["nb-wanlin-host-sos"]["payload_text"].replace("报警_251防区主机SOS", "防拆报警_主机")
    assert decode("http", tamper, profile="wanlin-alarm-host").states == [("fault.tamper", "active")]
    zone = S["nb-wanlin-host-sos"]["payload_text"].replace("报警_251防区主机SOS", "报警_003防区")
    assert decode("http", zone, profile="wanlin-alarm-host").states == [("alarm.intrusion", "active")]


# -- generic and errors -------------------------------------------------------------------------------
def test_generic_json() -> None:
    r = decode("anxin/room-7/up", '{"ts": 1700000000000, "co2": "1200", "hcho": 0.09, "panic": true, "smoke": false}')
    assert (r.profile, r.device_id) == ("generic-json", "room-7")
    assert r.values == {"co2": 1200, "hcho": 0.09}
    assert r.states == [("alarm.panic", "active"), ("alarm.smoke", "clear")]


def test_malformed_json_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="malformed JSON"):
        decode("zigbee2mqtt/x", '{"smoke": tr')


def test_unknown_topic_has_no_profile() -> None:
    with pytest.raises(NoProfileError, match="no profile matches"):
        decode("somewhere/else/entirely", "{}")


def test_json_that_fits_no_model_on_a_shared_topic() -> None:
    with pytest.raises(NoProfileError, match="fits none"):
        decode("zigbee2mqtt/lamp", '{"state":"ON","brightness":254}')
