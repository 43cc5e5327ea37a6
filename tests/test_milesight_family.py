"""The Milesight family decoder and its profiles against every vendor-documented example, behind every
LoRaWAN network server (ChirpStack v4 and v3, The Things Stack v3, raw bytes)."""

from __future__ import annotations

import base64
import copy
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from anxin.db import EventRecord, init_db, make_engine
from gateway.alarm_lane import lane_topics
from gateway.codecs import CodecConfigError, CodecError, get_codec
from gateway.decoder import DecodeError
from gateway.profiles import DEFAULT_PROFILE_DIR, ProfileError, ProfileSet, load_profiles
from gateway.registry import Registry
from program.registry_file import import_registry
from tests.harness import Publisher, running_gateway, wait_for
from tests.profile_helpers import Result, decode, profile_set
from tests.samples import samples
from tests.servers.mosquitto import MosquittoServer
from tests.servers.webhook import WebhookReceiver
from tests.test_alerting import directory, settings_for

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "milesight_examples.json").read_text(encoding="utf-8"))
EXAMPLES = {e["id"]: e for e in FIXTURE["examples"]}
CAPTURES = {c["id"]: c for c in FIXTURE["captures"]}
DEV = "24e124000000aa01"
NOW = datetime(2023, 5, 22, 7, 50, tzinfo=UTC)  # near the envelopes' own times, so they are trusted


# -- the vendor's examples --------------------------------------------------------------------------------
@pytest.mark.parametrize("eid", EXAMPLES)
def test_vendor_example(eid: str) -> None:
    """Each README example through its profile: the decoded fields, then canonical readings and events."""
    ex = EXAMPLES[eid]
    raw = bytes.fromhex(ex["payload_hex"])
    fields = profile_set().by_name[ex["profile"]].codec(raw)  # type: ignore[misc]
    assert fields == ex["expected"]
    if "differs" not in ex:  # identical to the README unless the fixture says why not
        assert ex["expected"] == ex["documented"]
    r = decode(f"lorawan/{DEV}/up", raw, profile=ex["profile"], raw_bytes=True)
    assert (r.profile, r.device_id) == (ex["profile"], DEV)
    assert r.values == pytest.approx(ex["readings"])
    assert r.states == [tuple(s) for s in ex["events"]]


VARIANT_EXAMPLES = {e["id"]: e for e in FIXTURE["variant_examples"]}


@pytest.mark.parametrize("eid", VARIANT_EXAMPLES)
def test_vendor_example_of_a_model_without_a_shipped_profile(eid: str) -> None:
    """The table knows more models than we ship profiles for: naming the variant is enough."""
    ex = VARIANT_EXAMPLES[eid]
    assert get_codec("milesight", {"variant": ex["variant"]})(bytes.fromhex(ex["payload_hex"])) == ex["expected"]
    if "differs" not in ex:
        assert ex["expected"] == ex["documented"]


def test_every_profile_has_vendor_examples() -> None:
    shipped = {n for n in profile_set().variants if n.startswith("milesight-")}
    covered = {e["profile"] for e in EXAMPLES.values()}
    # the GS101's README has no example; its one public sample is the ChirpStack capture in device_samples
    assert shipped - covered == {"milesight-gs101"}
    assert "cs-gs101-gas-normal" in samples()


# -- one device profile behind every network server --------------------------------------------------------
def _cs4(frame: bytes) -> tuple[str, bytes]:
    body = json.loads(samples()["cs-ws101-sos"]["payload_text"])  # a real ChirpStack v4 uplink
    body["deviceInfo"]["devEui"] = DEV
    body["data"] = base64.b64encode(frame).decode()
    return f"application/ca739e26-7b67-4f14-b69e-d568c22a5a75/device/{DEV}/event/up", json.dumps(body).encode()


def _cs3(frame: bytes) -> tuple[str, bytes]:
    body = copy.deepcopy(CAPTURES["cs3-ws303-leak"]["payload"])  # a ChirpStack v3 uplink (json_v3)
    body["devEUI"] = DEV
    body["data"] = base64.b64encode(frame).decode()
    return f"application/3/device/{DEV}/event/up", json.dumps(body).encode()


def _cs3_rx(frame: bytes) -> tuple[str, bytes]:
    return _cs3(frame)[0].replace("/event/up", "/rx"), _cs3(frame)[1]


def _tts(frame: bytes) -> tuple[str, bytes]:
    body = copy.deepcopy(CAPTURES["tts-ws301"]["payload"])  # a real The Things Stack v3 uplink
    body["end_device_ids"]["dev_eui"] = DEV.upper()  # TTS writes EUIs upper-case
    body["end_device_ids"]["device_id"] = "kitchen-door"
    body["received_at"] = "2023-05-22T07:47:30.123456789Z"
    body["uplink_message"]["frm_payload"] = base64.b64encode(frame).decode()
    return "v3/anxin-xm@ttn/devices/kitchen-door/up", json.dumps(body).encode()


def _raw(frame: bytes) -> tuple[str, bytes]:
    return f"lorawan/{DEV}/up", frame


SERVERS = {  # envelope, radio readings it carries, the time it gives
    "chirpstack-v4": (_cs4, {"rssi": -35, "snr": 11.5}, datetime(2023, 5, 22, 7, 47, 5, 404859, tzinfo=UTC)),
    "chirpstack-v3": (_cs3, {"rssi": -89, "snr": 7.5}, NOW),
    "chirpstack-v3-rx": (_cs3_rx, {"rssi": -89, "snr": 7.5}, NOW),
    "the-things-stack": (_tts, {"rssi": -35, "snr": 13.2}, datetime(2023, 5, 22, 7, 47, 30, 123456, tzinfo=UTC)),
    "raw": (_raw, {}, NOW),
}


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("eid", EXAMPLES)
def test_same_profile_behind_every_network_server(eid: str, server: str) -> None:
    """The registry names the device's profile; the envelope is whichever network server carried it."""
    ex = EXAMPLES[eid]
    wrap, radio, ts = SERVERS[server]
    topic, payload = wrap(bytes.fromhex(ex["payload_hex"]))
    r = decode(topic, payload, received_at=NOW, assigned={DEV: ex["profile"]})
    assert (r.profile, r.device_id) == (ex["profile"], DEV)
    assert r.values == pytest.approx({**ex["readings"], **radio})
    assert r.states == [tuple(s) for s in ex["events"]]
    assert {x.ts for x in r.readings} | {e.ts for e in r.events} <= {ts}


@pytest.mark.parametrize("cid", CAPTURES)
def test_network_server_captures(cid: str) -> None:
    """Public integration samples: ChirpStack v4, ChirpStack v3 (and the Milesight gateway's v3-style JSON,
    whose `time` is malformed: receipt time is used) and The Things Stack, each with the registry's profile."""
    c = CAPTURES[cid]
    if "refused" in c:
        with pytest.raises(DecodeError, match=c["refused"]):
            decode(c["topic"], json.dumps(c["payload"]), assigned={c["device_id"]: c["profile"]})
        return
    r = decode(c["topic"], json.dumps(c["payload"]), received_at=NOW if c["ts"] is None else
               datetime.fromisoformat(c["ts"]), assigned={c["device_id"]: c["profile"]})
    assert (r.profile, r.device_id) == (c["profile"], c["device_id"])
    assert r.values == pytest.approx(c["readings"])
    assert r.states == [tuple(s) for s in c["events"]]
    if c["ts"] is not None:
        assert r.readings[0].ts == datetime.fromisoformat(c["ts"])


def test_history_records_decode_but_are_not_live_readings() -> None:
    c = CAPTURES["tts-am103"]
    m = profile_set().match(c["topic"], json.dumps(c["payload"]).encode())  # AM103 is auto-selected
    assert m.profile.name == "milesight-am103"
    assert m.doc["decoded"]["history"] == c["history"]
    assert m.doc["network"] == {"server": "the-things-stack", "dev_eui": "1000000000000001",
                                "time": "2023-05-19T05:33:35.848446463Z", "rssi": -35, "snr": 13.2, "fport": 85,
                                "fcnt": 10335, "application": "application-tts-name"}


def test_uplink_without_application_data_is_not_an_error() -> None:
    """A MAC-only uplink (port 0) carries no frm_payload / data: radio readings only, no dead letter."""
    topic, payload = _tts(bytes.fromhex("017564030001"))
    body = json.loads(payload)
    del body["uplink_message"]["frm_payload"]
    body["uplink_message"]["f_port"] = 0
    r = decode(topic, json.dumps(body), received_at=NOW, assigned={DEV: "milesight-ws301"})
    assert (r.values, r.states) == ({"rssi": -35, "snr": 13.2}, [])
    topic, payload = _cs4(b"")
    r = decode(topic, payload, received_at=NOW, assigned={DEV: "milesight-ws101"})
    assert (r.values, r.states) == ({"rssi": -35, "snr": 11.5}, [])
    with pytest.raises(DecodeError, match="bad base64"):  # present but broken is still an error
        decode(topic, payload.replace(b'"data": ""', b'"data": "AXU!"'), assigned={DEV: "milesight-ws101"})


def test_unassigned_door_contact_is_never_guessed_as_a_leak() -> None:
    """0x03 0x00 is the WS301's contact and the WS303's leak state: without the registry, refuse."""
    c = CAPTURES["tts-ws301"]
    with pytest.raises(DecodeError, match="WS101: unknown channel 0x03 type 0x00 at byte 3"):
        profile_set().match(c["topic"], json.dumps(c["payload"]).encode())  # dead-lettered with the reasons
    leak_frame = bytes.fromhex("017564030001")
    with pytest.raises(DecodeError, match="unknown channel 0x03 type 0x00"):
        profile_set().match(*_raw(leak_frame))
    assert decode(*_raw(leak_frame), assigned={DEV: "milesight-ws301"}).states[0] == ("alarm.door", "active")
    assert decode(*_raw(leak_frame), assigned={DEV: "milesight-ws303"}).states[0] == ("alarm.water_leak", "active")


def test_auto_selection_among_air_monitors() -> None:
    am319 = bytes.fromhex(EXAMPLES["am319-hcho-1"]["payload_hex"])
    am308 = bytes.fromhex(EXAMPLES["am308-1"]["payload_hex"])
    am103 = bytes.fromhex(EXAMPLES["am103-1"]["payload_hex"])
    for wrap in (_cs4, _tts, _raw):
        assert decode(*wrap(am319)).profile == "milesight-am319"
        assert decode(*wrap(am308)).profile == "milesight-am308"
        assert decode(*wrap(am103)).profile == "milesight-am103"
        assert decode(*wrap(bytes.fromhex(EXAMPLES["am104-1"]["payload_hex"]))).profile == "milesight-am104"
        assert decode(*wrap(bytes.fromhex(EXAMPLES["am107-1"]["payload_hex"]))).profile == "milesight-am107"
        assert decode(*wrap(bytes.fromhex("017510FF2E02"))).states[0] == ("alarm.panic", "active")


# -- table semantics ---------------------------------------------------------------------------------------
def test_same_pair_means_different_things_per_variant() -> None:
    frame = bytes.fromhex("030001")
    assert get_codec("milesight", {"variant": "ws303"})(frame) == {"leakage_status": "leak"}
    assert get_codec("milesight", {"variant": "ws301"})(frame) == {"magnet_status": "open"}
    assert get_codec("milesight", {"variant": "ts302"})(frame) == {"magnet_chn1": "open"}
    with pytest.raises(CodecError, match="unknown channel 0x03 type 0x00 at byte 0"):
        get_codec("milesight", {"variant": "em300-th"})(frame)
    # alarm code 0: "release" on the TS series, "alarm" on the EM500 series
    assert get_codec("milesight", {"variant": "ts101"})(bytes.fromhex("93D71901640000"))["temperature_alarm"] == \
        "threshold alarm release"
    assert get_codec("milesight", {"variant": "em500-pt100"})(bytes.fromhex("83D719016400" "00"))[
        "temperature_alarm"] == "threshold alarm"
    # temperature and humidity sit on 0x02/0x03 on the GS301, 0x03/0x04 elsewhere
    assert get_codec("milesight", {"variant": "gs301"})(bytes.fromhex("02671C01036864")) == \
        {"temperature": 28.4, "humidity": 50}


def test_negative_temperatures_from_freezer_probes() -> None:
    # freezer at -18.5 °C on probe 2 (int16 -185 = 0xFF47), fridge at 4.2 °C on probe 1
    r = decode(*_raw(bytes.fromhex("017564" "03672A00" "046747FF")), assigned={DEV: "milesight-ts302"})
    assert r.values == {"temperature": 4.2, "temperature_probe2": -18.5, "battery": 100}
    r = decode(*_raw(bytes.fromhex("03674BFF")), assigned={DEV: "milesight-ts101"})
    assert r.values == {"temperature": -18.1}
    r = decode(*_raw(bytes.fromhex("8367F6FF01")), assigned={DEV: "milesight-ts101"})  # -1.0 °C, alarm
    assert (r.values, r.states) == ({"temperature": -1.0}, [("env.fridge_warm", "active")])


@pytest.mark.parametrize(("raw", "status"), [("FFFF", "device error"), ("FEFF", "polarizing")])
def test_gas_sentinel_is_a_fault_never_a_number(raw: str, status: str) -> None:
    r = decode(*_raw(bytes.fromhex(f"017564 047D{raw} 057D0100".replace(" ", ""))), assigned={DEV: "milesight-gs301"})
    assert "nh3" not in r.values and r.values["h2s"] == 0.01
    assert r.states[0] == ("fault.sensor", "active")
    assert r.events[0].detail["value"] == status and r.events[0].detail["nh3"] == status
    healthy = decode(*_raw(bytes.fromhex("047D0A00057D0100")), assigned={DEV: "milesight-gs301"})
    assert healthy.values == {"nh3": 0.1, "h2s": 0.01}
    assert healthy.states == [("fault.sensor", "clear")]


def test_one_gas_faulty_the_other_normal_is_one_fault_and_nothing_else() -> None:
    """The healthy gas's "normal" is not garbage, and clears nothing while the other gas is faulty."""
    r = decode(*_raw(bytes.fromhex("047D0A00057DFFFF")), assigned={DEV: "milesight-gs301"})
    assert (r.values, r.states) == ({"nh3": 0.1}, [("fault.sensor", "active")])
    assert r.events[0].detail["h2s"] == "device error" and "reason" not in r.events[0].detail


@pytest.mark.parametrize(("profile", "frame"), [("milesight-ts201-v2", "93673401640002"),
                                                ("milesight-ts101", "93D73401E80302"),
                                                ("milesight-em500-pt100", "83D73401640002")])
def test_mutation_alarm_is_neither_a_fridge_alarm_nor_a_fault(profile: str, frame: str) -> None:
    r = decode(*_raw(bytes.fromhex(frame)), assigned={DEV: profile})
    assert r.values == {"temperature": 30.8}
    assert [s for s in r.states if s[0] != "fault.sensor" or s[1] != "clear"] == []  # TS201: a reading clears


def test_probe_read_error_is_a_fault_and_a_reading_clears_it() -> None:
    err = decode(*_raw(bytes.fromhex("B36700")), assigned={DEV: "milesight-ts201-v2"})
    assert (err.values, err.states) == ({}, [("fault.sensor", "active")])
    ok = decode(*_raw(bytes.fromhex("0367CEFF")), assigned={DEV: "milesight-ts201-v2"})
    assert (ok.values, ok.states) == ({"temperature": -5.0}, [("fault.sensor", "clear")])


@pytest.mark.parametrize(("hex_frame", "message"), [
    ("0175", "truncated battery at byte 0"),
    ("0175640367", "truncated temperature at byte 3"),
    ("20CE9E744663", "truncated channel 0x20 0xce at byte 0"),
    ("017564FF99", "unknown channel 0xff type 0x99 at byte 3"),
])
def test_malformed_frames_name_the_offset(hex_frame: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        get_codec("milesight", {"variant": "em300-th"})(bytes.fromhex(hex_frame))


@pytest.mark.parametrize(("options", "message"), [
    ({"variant": "ws999"}, "unknown Milesight variant 'ws999'"),
    ({"variant": "ws301", "colour": 1}, "not colour"),
    ({"channels": {"3 67": {"name": "t", "type": "i16"}}}, "not 'ID TYPE' in hex"),
    ({"channels": {"03 67": {"name": "t", "type": "f32"}}}, "type 'f32'"),
    ({"channels": {"03 67": {"name": "t", "type": "u8", "div": 0}}}, "div must be a non-zero number"),
    ({"channels": {"03 67": {"parts": [{"name": "t", "type": "u8"}], "into": "h", "extra": 1}}}, "unknown key"),
    ({"variant": "gs524n", "channels": {"03 67": {"name": "t", "type": "u8"}}}, "fixed frame"),
])
def test_bad_codec_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(CodecConfigError, match=message):
        get_codec("milesight", options)


# -- an integrator adds a model with a YAML file alone ------------------------------------------------------
WS203_PROFILE = """
# Milesight WS203 motion & occupancy sensor with temperature/humidity: not shipped, added by YAML only.
name: site-ws203
kind: temp_humidity
network: lorawan
auto_select: false
binary:
  codec: milesight
  options:
    channels:
      "03 67": {name: temperature, type: i16, div: 10}
      "04 68": {name: humidity, type: u8, div: 2}
      "05 00": {name: occupancy, type: u8, enum: {0: vacant, 1: occupied}}
      "83 67": {parts: [{name: temperature, type: i16, div: 10},
                        {name: temperature_alarm, type: u8, enum: {0: threshold alarm release, 1: threshold alarm}}]}
      "20 CE": {into: history, parts: [{name: timestamp, type: u32},
                                       {type: u8, bits: [{name: report_type, shift: 0, width: 3,
                                        enum: {0: temperature threshold alarm release, 1: temperature threshold alarm,
                                               2: pir idle, 3: pir trigger, 4: period}}]},
                                       {name: occupancy, type: u8, enum: {0: vacant, 1: occupied}},
                                       {name: temperature, type: i16, div: 10}, {name: humidity, type: u8, div: 2}]}
readings:
  - {metric: temperature, path: decoded.temperature}
  - {metric: humidity, path: decoded.humidity}
  - {metric: battery, path: decoded.battery}
  - {metric: rssi, path: network.rssi}
events:
  - type: env.fridge_warm
    path: decoded.temperature_alarm
    active: [threshold alarm]
    clear: [threshold alarm release]
"""


def _site_profiles(tmp_path: Path, extra: str) -> ProfileSet:
    shutil.copytree(DEFAULT_PROFILE_DIR / "network-servers", tmp_path / "network-servers")
    (tmp_path / "site.yaml").write_text(extra, encoding="utf-8")
    return ProfileSet(load_profiles(tmp_path))


def test_new_model_needs_only_a_yaml_profile(tmp_path: Path) -> None:
    """WS203 README examples (Milesight-IoT/SensorDecoders:ws-series/ws203/README.md) through a profile
    written in YAML, behind ChirpStack and The Things Stack, with no codec change."""
    ps = _site_profiles(tmp_path, WS203_PROFILE)
    assigned = {DEV: "site-ws203"}

    def run(frame: str, wrap: Any = _cs4) -> Result:
        m = ps.match(*wrap(bytes.fromhex(frame)), assigned=assigned)
        d = m.profile.decode(m.doc, m.device_id, NOW)
        return Result(d.profile, d.device_id, d.readings, d.events)

    r = run("017564036734010468650500 00".replace(" ", ""))
    assert r.values == {"temperature": 30.8, "humidity": 50.5, "battery": 100, "rssi": -35}
    alarm = run("8367220101", _tts)
    assert (alarm.values, alarm.states) == ({"temperature": 29, "rssi": -35}, [("env.fridge_warm", "active")])
    m = ps.match(*_raw(bytes.fromhex("20CEAE5BA664040024016520CE5C5CA6640301340165")), assigned=assigned)
    assert m.doc["decoded"] == {"history": [  # README example, vendor decoder's words
        {"timestamp": 1688624046, "report_type": "period", "occupancy": "vacant", "temperature": 29.2,
         "humidity": 50.5},
        {"timestamp": 1688624220, "report_type": "pir trigger", "occupancy": "occupied", "temperature": 30.8,
         "humidity": 50.5}]}


def test_variant_plus_channels_overrides_one_pair(tmp_path: Path) -> None:
    """A firmware that adds a pair to a shipped model: name the variant and add only that pair."""
    profile = yaml.safe_dump({
        "name": "site-ws301-plus", "kind": "door", "network": "lorawan", "auto_select": False,
        "binary": {"codec": "milesight", "options": {"variant": "ws301",
                                                     "channels": {"05 67": {"name": "temperature", "type": "i16",
                                                                            "div": 10}}}},
        "readings": [{"metric": "temperature", "path": "decoded.temperature"}],
        "events": [{"type": "alarm.door", "path": "decoded.magnet_status", "active": ["open"], "clear": ["close"]}],
    })
    ps = _site_profiles(tmp_path, profile)
    m = ps.match(*_raw(bytes.fromhex("0300010567F6FF")), assigned={DEV: "site-ws301-plus"})
    d = m.profile.decode(m.doc, m.device_id, NOW)
    assert [(r.metric, r.value) for r in d.readings] == [("temperature", -1.0)]
    assert [(e.type.value, e.state.value) for e in d.events] == [("alarm.door", "active")]


@pytest.mark.parametrize(("text", "message"), [
    (WS203_PROFILE.replace("type: u8, div: 2}\n      \"05", "type: u9, div: 2}\n      \"05"), "type 'u9'"),
    ("name: x\nnetwork: lorawan\nbinary: {codec: milesight, options: {variant: nope}}\n"
     "readings: [{metric: battery, path: decoded.battery}]\n", "unknown Milesight variant 'nope'"),
    ("name: x\nnetwork: lorawan\ntopic: a/{b}\nbinary: {codec: milesight}\n"
     "readings: [{metric: battery, path: decoded.battery}]\n", "takes topic"),
    ("name: x\nnetwork: lorawan\ndevice_id: {path: devEUI}\nbinary: {codec: milesight}\n"
     "readings: [{metric: battery, path: decoded.battery}]\n", "takes its device id from its network server"),
    ("name: x\nnetwork: zigbee\nbinary: {codec: milesight}\n"
     "readings: [{metric: battery, path: decoded.battery}]\n", "no network server of family 'zigbee'"),
])
def test_bad_network_profiles_fail_to_load_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        _site_profiles(tmp_path, text)


def test_life_safety_lane_holds_every_network_servers_topic(tmp_path: Path) -> None:
    sessions = init_db(make_engine(f"sqlite:///{tmp_path}/r.db"))
    import_registry(sessions, {"institutions": [{"id": "k1", "name": "幼儿园"}], "devices": [
        {"id": DEV, "institution": "k1", "profile": "milesight-ws101"},
        {"id": "24e1240000000002", "institution": "k1", "profile": "milesight-ws303"},  # not life-safety
    ]})
    registry = Registry(sessions)
    registry.refresh()
    assert lane_topics(registry, profile_set()) == {
        f"application/+/device/{DEV}/event/up", f"application/+/device/{DEV}/rx", f"lorawan/{DEV}/up",
    }  # TTS names the device in the topic by its own id, not the EUI: it stays on the ingest path


# -- end to end: a real broker and gateway, one device profile, three network servers -----------------------
def test_uplinks_from_every_network_server_reach_the_gateway(tmp_path: Path, mosquitto: MosquittoServer,
                                                               webhooks: WebhookReceiver) -> None:
    """An SOS press behind The Things Stack (ingest path) and one as raw bytes (alarm-lane path) both reach
    the police; a leak behind ChirpStack v3 is recorded. Devices are told apart by the registry only."""
    registry = directory(webhooks.url)
    registry["devices"] += [
        {"id": DEV, "institution": "xm-001", "profile": "milesight-ws101", "room": "前台"},
        {"id": "24e1240000000b02", "institution": "xm-001", "profile": "milesight-ws101", "room": "午睡室"},
        {"id": "24e1240000000c03", "institution": "xm-001", "profile": "milesight-ws303", "room": "厨房"},
    ]
    press = bytes.fromhex("017564FF2E01")
    with running_gateway(settings_for(tmp_path, mosquitto.port), registry=registry) as gw, \
            Publisher(mosquitto.port) as pub:
        assert f"lorawan/{DEV}/up" in lane_topics(gw.registry, gw.profiles)
        topic, payload = _tts(press)
        pub.publish(topic, payload)
        pub.publish("lorawan/24e1240000000b02/up", press)
        leak = _cs3(bytes.fromhex("017564030001"))
        pub.publish(leak[0].replace(DEV, "24e1240000000c03"), leak[1])

        def recorded() -> set[tuple[str, str, str, str]]:
            with gw.sessions() as s:
                return {(e.device_id, e.type, e.state, e.source.split(":")[0]) for e in s.scalars(select(EventRecord))}

        wait_for(lambda: {(DEV, "alarm.panic", "active", "mqtt"), ("24e1240000000b02", "alarm.panic", "active", "mqtt"),
                          ("24e1240000000c03", "alarm.water_leak", "active", "mqtt")} <= recorded(),
                 what="both presses and the leak recorded")
        wait_for(lambda: webhooks.paths().count("/police-siming") >= 2, what="police notified of both presses")


def test_a_frame_that_fails_its_assigned_profile_is_not_given_to_another() -> None:
    """An AM319 frame from a device the registry calls an AM307 (0x0A 0x7D is unknown to the AM307) is a
    dead letter naming the assigned profile, not silently decoded as an AM319."""
    frame = bytes.fromhex(EXAMPLES["am319-hcho-1"]["payload_hex"])
    assert decode(*_cs4(frame)).profile == "milesight-am319"  # unassigned: auto-selected
    with pytest.raises(DecodeError, match=r"milesight-am307 \(assigned to 24e124000000aa01\).*0x0a type 0x7d"):
        decode(*_cs4(frame), assigned={DEV: "milesight-am307"})
