"""Devices locked to their own topics, against a real mosquitto running the files `anxin broker-config` writes."""

from __future__ import annotations

import base64
import getpass
import glob
import io
import queue
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import select

from anxin.db import EventRecord
from gateway.broker_access import BrokerConfigError, broker_access, hash_password, verify_password
from gateway.profiles import ProfileSet, load_profiles
from program.cli import main
from tests.harness import gateway_settings, running_gateway, wait_for
from tests.servers import free_port, stop_process, wait_port
from tests.servers.mosquitto import MOSQUITTO, MosquittoServer

PASSWORDS = {"anxin-gateway": "gw-Secret-1", "z2m-a": "bridge-A-pw", "z2m-b": "bridge-B-pw",
             "tasmota-a": "tasmota-A-pw", "tasmota-new": "new-device-pw"}
# What the gateway subscribes for these devices (zigbee2mqtt profiles take any base topic).
GATEWAY_SUBSCRIPTIONS = ["+/+", "+/+/availability", "tele/+/SENSOR"]


def _registry() -> dict[str, Any]:
    return {
        "institutions": [{"id": "inst-a", "name": "甲园", "district": "思明区"},
                         {"id": "inst-b", "name": "乙园", "district": "湖里区"}],
        "devices": [
            {"id": "sos-a", "institution": "inst-a", "profile": "zigbee2mqtt-sos-button", "via": "z2m-a"},
            {"id": "sos-b", "institution": "inst-b", "profile": "zigbee2mqtt-sos-button", "via": "z2m-b"},
            {"id": "tasmota-a", "institution": "inst-a", "profile": "tasmota-sensor",
             "mqtt": {"password_hash": hash_password(PASSWORDS["tasmota-a"])}},
        ],
        "mqtt": {
            "gateways": [{"username": "anxin-gateway", "password_hash": hash_password(PASSWORDS["anxin-gateway"])}],
            "bridges": [
                {"id": "z2m-a", "kind": "zigbee2mqtt", "base_topic": "zigbee2mqtt", "institution": "inst-a",
                 "password_hash": hash_password(PASSWORDS["z2m-a"])},
                {"id": "z2m-b", "kind": "zigbee2mqtt", "base_topic": "zigbee2mqtt", "institution": "inst-b",
                 "password_hash": hash_password(PASSWORDS["z2m-b"])},
            ],
        },
    }


def _profiles() -> list[Any]:
    return load_profiles()


def _broker_config(registry: dict[str, Any], tmp: Path, *extra: str) -> Path:
    reg = tmp / "registry.yaml"
    reg.write_text(yaml.safe_dump(registry, allow_unicode=True), encoding="utf-8")
    out = tmp / "auth"
    assert main(["broker-config", "--registry", str(reg), "--out", str(out), *extra]) == 0
    return out


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[MosquittoServer]:
    auth = _broker_config(_registry(), tmp_path)
    with MosquittoServer(tmp_path / "mq", password_file=auth / "passwd", acl_file=auth / "acl",
                         extra_config=["max_packet_size 65536"]) as broker:
        yield broker


class Client:
    """A paho client that records what it receives and how its CONNECT was answered."""

    def __init__(self, port: int, username: str | None, password: str | None = None, *,
                 client_id: str | None = None, protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311) -> None:
        # MQTT 3.1.1 as the devices speak it (paho 2.2 as an MQTT 5 client drops its connection on a refused
        # PUBACK, which would hide the fences below).
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.received: list[tuple[str, bytes]] = []
        self._connack: queue.Queue[ReasonCode] = queue.Queue()
        self._suback: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
                                  protocol=protocol)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self._connack.put(rc)
        self.client.on_subscribe = lambda _c, _u, _mid, rcs, _p: self._suback.put(list(rcs))
        self.client.on_message = lambda _c, _u, m: self.inbox.put((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.connack = self._connack.get(timeout=10)

    @property
    def accepted(self) -> bool:
        return not self.connack.is_failure

    def subscribe(self, *topics: str) -> list[ReasonCode]:
        self.client.subscribe([(t, 1) for t in topics])
        return self._suback.get(timeout=10)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def drain(self) -> list[tuple[str, bytes]]:
        while not self.inbox.empty():
            self.received.append(self.inbox.get())
        return self.received

    def wait_for_payload(self, payload: bytes) -> None:
        wait_for(lambda: any(p == payload for _, p in self.drain()), what=f"{payload!r} delivered")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _accepted(port: int, username: str, password: str) -> bool:
    c = Client(port, username, password)
    c.close()
    return c.accepted


def _gateway(port: int) -> Client:
    gw = Client(port, "anxin-gateway", PASSWORDS["anxin-gateway"])
    assert gw.accepted
    assert all(not rc.is_failure for rc in gw.subscribe(*GATEWAY_SUBSCRIPTIONS))
    return gw


def _press(marker: str) -> bytes:
    return f'{{"action":"emergency","m":"{marker}"}}'.encode()


# -- the hash format ----------------------------------------------------------------------------------
def test_hash_format_matches_mosquitto_passwd(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw_file), "someone", "s3cret pw"], check=True)
    made_by_mosquitto = pw_file.read_text().strip().split(":", 1)[1]
    assert made_by_mosquitto.startswith("$7$101$")
    assert verify_password("s3cret pw", made_by_mosquitto)
    assert not verify_password("s3cret pX", made_by_mosquitto)
    iterations, salt = made_by_mosquitto.split("$")[2:4]
    assert hash_password("s3cret pw", salt=base64.b64decode(salt), iterations=int(iterations)) == made_by_mosquitto
    ours = hash_password("s3cret pw")
    assert verify_password("s3cret pw", ours) and ours != hash_password("s3cret pw")  # salted
    assert base64.b64decode(ours.split("$")[3]).isascii()  # printable salt, usable by EMQX too


# -- who may connect ----------------------------------------------------------------------------------
def test_anonymous_and_wrong_password_are_refused(locked: MosquittoServer) -> None:
    anonymous = Client(locked.port, None)
    wrong = Client(locked.port, "z2m-a", "not-the-password")
    unknown = Client(locked.port, "nobody", "whatever")
    right = Client(locked.port, "z2m-a", PASSWORDS["z2m-a"])
    try:
        assert not anonymous.accepted and not wrong.accepted and not unknown.accepted
        assert right.accepted
    finally:
        for c in (anonymous, wrong, unknown, right):
            c.close()


# -- who may write --------------------------------------------------------------------------------------
def test_a_device_of_institution_a_cannot_raise_an_alarm_for_institution_b(locked: MosquittoServer) -> None:
    gw = _gateway(locked.port)
    bridge_a = Client(locked.port, "z2m-a", PASSWORDS["z2m-a"])
    tasmota_a = Client(locked.port, "tasmota-a", PASSWORDS["tasmota-a"])
    try:
        # Forged presses for B's button, then A's own press: one client's messages arrive in order, so
        # once A's own press is delivered, a forged one that got through would already be there too.
        bridge_a.publish("zigbee2mqtt/sos-b", _press("forged-by-bridge-a"))
        tasmota_a.publish("zigbee2mqtt/sos-b", _press("forged-by-tasmota-a"))
        tasmota_a.publish("tele/tasmota-b/SENSOR", b'{"forged": true}')
        bridge_a.publish("zigbee2mqtt/sos-a", _press("own-a"))
        tasmota_a.publish("tele/tasmota-a/SENSOR", b'{"own": true}')
        bridge_a.publish("zigbee2mqtt/sos-a/availability", b'{"state":"online"}')
        gw.wait_for_payload(_press("own-a"))
        gw.wait_for_payload(b'{"own": true}')
        gw.wait_for_payload(b'{"state":"online"}')
        topics = {t for t, _ in gw.drain()}
        assert topics == {"zigbee2mqtt/sos-a", "tele/tasmota-a/SENSOR", "zigbee2mqtt/sos-a/availability"}
        # Refused quietly: neither sender lost its connection (no second CONNACK).
        assert bridge_a._connack.empty() and tasmota_a._connack.empty()
    finally:
        for c in (gw, bridge_a, tasmota_a):
            c.close()


# -- who may read ----------------------------------------------------------------------------------------
def test_a_device_account_reads_nothing(locked: MosquittoServer) -> None:
    gw = _gateway(locked.port)
    snoop = Client(locked.port, "tasmota-a", PASSWORDS["tasmota-a"])
    bridge_b = Client(locked.port, "z2m-b", PASSWORDS["z2m-b"])
    try:
        snoop.subscribe("#", "zigbee2mqtt/+")
        bridge_b.publish("zigbee2mqtt/sos-b", _press("b-1"))
        gw.wait_for_payload(_press("b-1"))  # delivered to the gateway, so delivery to the snoop was decided
        snoop.publish("tele/tasmota-a/SENSOR", b"fence")
        gw.wait_for_payload(b"fence")
        assert snoop.drain() == []
    finally:
        for c in (gw, snoop, bridge_b):
            c.close()


def _drop_with_will(port: int, username: str, password: str, will_topic: str, payload: bytes) -> str:
    """Connect with a last will, then lose the connection without DISCONNECT: the broker sends the will
    if the account may write its topic. Returns the client id."""
    client_id = f"will-{uuid.uuid4().hex[:8]}"
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    c.username_pw_set(username, password)
    c.will_set(will_topic, payload, qos=1)
    answers: queue.Queue[ReasonCode] = queue.Queue()
    c.on_connect = lambda _c, _u, _f, rc, _p: answers.put(rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert not answers.get(timeout=10).is_failure
    finally:
        c.loop_stop()
        sock = c.socket()
        assert sock is not None
        sock.close()
    return client_id


def test_a_device_last_will_reaches_the_gateway_and_a_forged_one_does_not(tmp_path: Path) -> None:
    """Offline detection rests on last wills: each device's own will topic is in its account (Shelly Gen2's
    <id>/online included), and a will on another device's topic is dropped (mosquitto accepts the CONNECT
    and checks the will when it would send it)."""
    registry = _registry()
    registry["devices"].append({"id": "shellyplussmoke-1", "institution": "inst-a", "profile": "shelly-gen2-smoke",
                                "mqtt": {"password_hash": hash_password("shelly-pw")}})
    auth = _broker_config(registry, tmp_path)
    with MosquittoServer(tmp_path / "mq", password_file=auth / "passwd", acl_file=auth / "acl") as broker:
        gw = Client(broker.port, "anxin-gateway", PASSWORDS["anxin-gateway"])
        try:
            assert all(not rc.is_failure for rc in gw.subscribe("tele/+/LWT", "+/online"))
            forger = _drop_with_will(broker.port, "tasmota-a", PASSWORDS["tasmota-a"], "tele/tasmota-b/LWT",
                                     b"forged Offline")
            # the broker has handled (and dropped) the forged will before the real ones are sent
            wait_for(lambda: f"Client {forger} closed its connection." in broker.log.read_text(),
                     what="the forger's connection lost")
            _drop_with_will(broker.port, "tasmota-a", PASSWORDS["tasmota-a"], "tele/tasmota-a/LWT", b"Offline")
            _drop_with_will(broker.port, "shellyplussmoke-1", "shelly-pw", "shellyplussmoke-1/online", b"false")
            gw.wait_for_payload(b"Offline")
            gw.wait_for_payload(b"false")
            assert sorted(t for t, _ in gw.drain()) == ["shellyplussmoke-1/online", "tele/tasmota-a/LWT"]
        finally:
            gw.close()


# -- shared subscription groups ---------------------------------------------------------------------------
PRESSES = 10


def _presses_reaching_group(broker: MosquittoServer, gateway_group: str,
                            stranger_filters: list[str]) -> tuple[int, list[ReasonCode]]:
    """A device account tries to join ``stranger_filters``; how many of PRESSES presses reach the gateway's
    group, and what did the broker answer the stranger's SUBSCRIBE?"""
    gw = Client(broker.port, "anxin-gateway", PASSWORDS["anxin-gateway"], protocol=MQTTProtocolVersion.MQTTv5)
    stranger = Client(broker.port, "tasmota-a", PASSWORDS["tasmota-a"])
    bridge_a = Client(broker.port, "z2m-a", PASSWORDS["z2m-a"])
    try:
        assert all(not rc.is_failure for rc in gw.subscribe(f"$share/{gateway_group}/zigbee2mqtt/+",
                                                             "zigbee2mqtt/+/availability"))
        granted = stranger.subscribe(*stranger_filters)
        for i in range(PRESSES):
            bridge_a.publish("zigbee2mqtt/sos-a", _press(f"p{i}"))
        # Same client, so in order: once this is delivered, every press was either delivered or dropped.
        bridge_a.publish("zigbee2mqtt/sos-a/availability", b"fence")
        gw.wait_for_payload(b"fence")
        assert stranger.drain() == []  # it reads nothing: the broker refuses it every delivery
        return sum(1 for t, _ in gw.drain() if t == "zigbee2mqtt/sos-a"), granted
    finally:
        for c in (gw, stranger, bridge_a):
            c.close()


GUESSABLE = ["$share/anxin-alarms/zigbee2mqtt/+", "$share/anxin-alarms/#"]
EVERYTHING = ["$share/anxin/#", "$share/anxin-alarms/#", "$share/anxin/zigbee2mqtt/+",
              "$share/anxin-alarms/zigbee2mqtt/+", "#", "zigbee2mqtt/+"]


def test_a_device_account_in_a_guessable_group_swallows_presses(locked: MosquittoServer) -> None:
    """Why the gateway's group names must be secret with the acl_file: mosquitto 2.0 grants every SUBSCRIBE,
    hands a group member its turn of the messages, then finds it may not read them and drops them."""
    got, granted = _presses_reaching_group(locked, "anxin-alarms", GUESSABLE)
    assert all(not rc.is_failure for rc in granted)
    assert got == PRESSES // 2  # round robin between two members: every second press is lost


def test_a_secret_group_name_keeps_strangers_out(locked: MosquittoServer) -> None:
    got, _ = _presses_reaching_group(locked, f"anxin-{uuid.uuid4().hex}", EVERYTHING)
    assert got == PRESSES


# -- strict mode: the dynamic security plugin checks SUBSCRIBE --------------------------------------------------
DYNSEC = next(iter(sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so")
                          + glob.glob("/usr/lib/mosquitto_dynamic_security.so"))), "")


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[MosquittoServer]:
    assert DYNSEC, "mosquitto's dynamic security plugin is missing (Debian package mosquitto ships it)"
    auth = _broker_config(_registry(), tmp_path)
    with MosquittoServer(tmp_path / "mq", allow_anonymous=False, extra_config=[
            f"plugin {DYNSEC}", f"plugin_opt_config_file {auth}/dynamic-security.json"]) as broker:
        yield broker


def test_strict_mode_refuses_strangers_joining_even_a_guessable_group(strict: MosquittoServer) -> None:
    got, granted = _presses_reaching_group(strict, "anxin-alarms", EVERYTHING)
    assert granted and all(rc.is_failure for rc in granted)  # every SUBSCRIBE refused (0x80)
    assert got == PRESSES


def test_strict_mode_accounts_and_topics(strict: MosquittoServer) -> None:
    assert not _accepted(strict.port, "z2m-a", "wrong") and not _accepted(strict.port, "nobody", "x")
    anonymous = Client(strict.port, None)
    anonymous.close()
    assert not anonymous.accepted
    gw = _gateway(strict.port)
    bridge_a = Client(strict.port, "z2m-a", PASSWORDS["z2m-a"])
    try:
        bridge_a.publish("zigbee2mqtt/sos-b", _press("forged"))
        bridge_a.publish("zigbee2mqtt/sos-a", _press("own"))
        gw.wait_for_payload(_press("own"))
        assert [t for t, _ in gw.drain()] == ["zigbee2mqtt/sos-a"]
    finally:
        gw.close()
        bridge_a.close()


def test_the_gateway_and_its_alarm_lane_work_in_strict_mode(strict: MosquittoServer, tmp_path: Path) -> None:
    _gateway_records_only_own_presses(strict, tmp_path)


def test_with_max_queued_messages_0_a_refused_publish_costs_the_connection(tmp_path: Path) -> None:
    """Why the broker configs set a large max_queued_messages instead of 0 ("unlimited")."""
    auth = _broker_config(_registry(), tmp_path)
    with MosquittoServer(tmp_path / "mq", password_file=auth / "passwd", acl_file=auth / "acl",
                         extra_config=["max_queued_messages 0"]) as broker:
        bridge_a = Client(broker.port, "z2m-a", PASSWORDS["z2m-a"], client_id="bridge-a")
        try:
            bridge_a.client.publish("zigbee2mqtt/sos-b", _press("stray"), qos=0)
            # paho reconnects by itself: a second CONNACK means the broker dropped the first connection.
            assert not bridge_a._connack.get(timeout=15).is_failure
        finally:
            bridge_a.close()


# -- reload, size limit -------------------------------------------------------------------------------------
def test_a_new_device_works_after_broker_config_and_sighup_without_a_restart(tmp_path: Path) -> None:
    registry = _registry()
    auth = _broker_config(registry, tmp_path)
    with MosquittoServer(tmp_path / "mq", password_file=auth / "passwd", acl_file=auth / "acl") as broker:
        gw = _gateway(broker.port)
        bridge_b = Client(broker.port, "z2m-b", PASSWORDS["z2m-b"], client_id="bridge-b")
        try:
            assert not _accepted(broker.port, "tasmota-new", PASSWORDS["tasmota-new"])
            registry["devices"].append({"id": "tasmota-new", "institution": "inst-b", "profile": "tasmota-sensor",
                                        "mqtt": {"password_hash": hash_password(PASSWORDS["tasmota-new"])}})
            # Institution B's bridge is withdrawn in the same change.
            registry["mqtt"]["bridges"] = [b for b in registry["mqtt"]["bridges"] if b["id"] != "z2m-b"]
            registry["devices"] = [d for d in registry["devices"] if d["id"] != "sos-b"]
            _broker_config(registry, tmp_path, "--reload-pid", str(broker.pid_file))
            wait_for(lambda: _accepted(broker.port, "tasmota-new", PASSWORDS["tasmota-new"]),
                     what="the reloaded password file")
            new = Client(broker.port, "tasmota-new", PASSWORDS["tasmota-new"])
            new.publish("tele/tasmota-new/SENSOR", b'{"new": 1}')
            gw.wait_for_payload(b'{"new": 1}')
            new.close()
            # The withdrawn bridge loses the connection it had and cannot connect again.
            wait_for(lambda: "Client bridge-b disconnected." in broker.log.read_text(), what="bridge B dropped")
            assert not _accepted(broker.port, "z2m-b", PASSWORDS["z2m-b"])
            # The gateway kept its connection through the reload (no restart: one CONNACK only).
            assert gw._connack.empty() and gw.client.is_connected()
        finally:
            gw.close()
            bridge_b.close()


def test_an_oversize_payload_is_refused(locked: MosquittoServer) -> None:
    gw = _gateway(locked.port)
    big = Client(locked.port, "z2m-a", PASSWORDS["z2m-a"])
    try:
        big.client.publish("zigbee2mqtt/sos-a", _press("x" * 70_000), qos=1)
        # max_packet_size: the broker closes the connection instead of taking the packet.
        wait_for(lambda: "disconnected due to oversize packet" in locked.log.read_text(),
                 what="the broker refusing the packet")
        small = Client(locked.port, "z2m-a", PASSWORDS["z2m-a"], client_id="small")
        small.publish("zigbee2mqtt/sos-a", _press("small"))
        gw.wait_for_payload(_press("small"))
        small.close()
        assert all(len(p) < 1000 for _, p in gw.drain())
    finally:
        gw.close()
        big.close()


# -- the gateway on a locked broker ---------------------------------------------------------------------------
def test_the_gateway_and_its_alarm_lane_work_with_their_account(locked: MosquittoServer, tmp_path: Path) -> None:
    _gateway_records_only_own_presses(locked, tmp_path)


def _gateway_records_only_own_presses(broker: MosquittoServer, tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=broker.port, mqtt_username="anxin-gateway",
                                mqtt_password=PASSWORDS["anxin-gateway"], duplicate_window_s=0,
                                mqtt_shared_group=f"anxin-{uuid.uuid4().hex[:12]}")
    registry = {k: v for k, v in _registry().items() if k != "mqtt"}
    with running_gateway(settings, registry=registry) as gw:
        assert gw.alarm_lane is not None and gw.alarm_lane.held() == {"+/sos-a", "+/sos-b"}
        bridge_a = Client(broker.port, "z2m-a", PASSWORDS["z2m-a"])
        try:
            bridge_a.publish("zigbee2mqtt/sos-b", _press("forged"))
            bridge_a.publish("zigbee2mqtt/sos-a", _press("own"))

            def panic_devices() -> list[str]:
                with gw.sessions() as s:
                    return list(s.scalars(select(EventRecord.device_id).where(EventRecord.type == "alarm.panic")))
            wait_for(lambda: "sos-a" in panic_devices(), what="A's press recorded")
            gw.drain()
            assert panic_devices() == ["sos-a"]
        finally:
            bridge_a.close()


# -- the registry file ----------------------------------------------------------------------------------------
def test_topics_per_kind_of_account() -> None:
    registry = _registry()
    registry["devices"] += [
        {"id": "24e124136b316530", "institution": "inst-b", "profile": "milesight-em300-th", "via": "chirpstack"},
        {"id": "shellyplussmoke-1", "institution": "inst-b", "profile": "shelly-gen2-smoke",
         "mqtt": {"username": "shelly-b", "password_hash": hash_password("x")}},
        {"id": "no-account", "institution": "inst-b", "profile": "tasmota-sensor"},
        {"id": "shellysmoke-ab12", "institution": "inst-b", "profile": "shelly-gen1-smoke",
         "mqtt": {"password_hash": hash_password("z")}},
        {"id": "tasmota-a/DS18B20-1", "institution": "inst-a", "profile": "tasmota-sensor"},  # via its parent
        {"id": "24e124136b316531", "institution": "inst-b", "profile": "milesight-em300-th", "via": "tts"},
    ]
    registry["mqtt"]["bridges"] += [
        {"id": "chirpstack", "base_topic": "application", "password_hash": hash_password("y")},
        {"id": "tts", "base_topic": "v3", "password_hash": hash_password("w")}]
    access = broker_access(registry, _profiles())
    by_name = {a.username: a for a in access.accounts}
    # Each account writes every topic a profile reads for its device, and its last will (a CONNECT whose will
    # it may not write is refused), and nothing naming another device.
    assert by_name["tasmota-a"].write == ("tele/tasmota-a/SENSOR", "tele/tasmota-a/LWT")
    assert by_name["shelly-b"].write == ("shellyplussmoke-1/events/rpc", "shellyplussmoke-1/online")
    assert set(by_name["shellysmoke-ab12"].write) == {
        "shellies/shellysmoke-ab12/online", "shellies/shellysmoke-ab12/announce",
        *(f"shellies/shellysmoke-ab12/sensor/{x}"
          for x in ("smoke", "temperature", "battery", "error", "flood", "humidity", "lux", "state"))}
    # A LoRaWAN profile is bound to every network server: a bridge gets the servers under its base topic.
    assert by_name["chirpstack"].write == ("application/+/device/24e124136b316530/event/up",
                                           "application/+/device/24e124136b316530/rx")
    assert by_name["tts"].write == ("v3/+/devices/24e124136b316531/up",)
    assert by_name["z2m-a"].write == ("zigbee2mqtt/bridge/#", "zigbee2mqtt/sos-a", "zigbee2mqtt/sos-a/availability")
    assert all(not a.read for a in access.accounts if a.username != "anxin-gateway")
    assert set(GATEWAY_SUBSCRIPTIONS) <= set(by_name["anxin-gateway"].read) and not by_name["anxin-gateway"].write
    assert set(by_name["anxin-gateway"].read) == set(ProfileSet(_profiles()).subscriptions())
    assert not any("DS18B20" in w for w in access.warnings)
    assert any("no-account" in w for w in access.warnings)
    assert "password" not in access.password_file().replace("password_hash", "")
    assert access.password_file().count("$7$") == len(access.accounts)


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["mqtt"]["gateways"][0].update(password="plain"), "never a plaintext password"),
    (lambda r: r["mqtt"]["gateways"][0].update(password_hash="secret"), "$7$ hash"),
    (lambda r: r["mqtt"]["gateways"][0].update(password_hash=hash_password("x", salt=b"short")), "12-byte salt"),
    (lambda r: r["devices"][0].update(via="nowhere"), "not in mqtt.bridges"),
    (lambda r: r["devices"][2].update(mqtt=None, via="z2m-a"), "not under bridge z2m-a's base topic"),
    (lambda r: r["devices"].append({"id": "24e124136b316530", "profile": "milesight-em300-th", "via": "z2m-a"}),
     "not under bridge z2m-a's base topic"),  # no network server publishes under zigbee2mqtt/
    (lambda r: r["devices"].append({"id": "tasmota-a/DS18B20-1", "profile": "tasmota-sensor", "via": "z2m-a"}),
     "sub-device publishes through its parent"),
    (lambda r: r["devices"][2].update(topic_vars={"nope": "x"}), "are in no topic of profile tasmota-sensor"),
    (lambda r: r["devices"][2].update(id="tele/evil"), "cannot stand in topic"),
    (lambda r: r["devices"][2]["mqtt"].update(username="z2m-b"), "used twice"),
    (lambda r: r["devices"][2]["mqtt"].update(username="a:b"), "bad MQTT username"),
    (lambda r: r["devices"][0].update(mqtt={"password_hash": hash_password("x")}), "not both"),
])
def test_registry_mistakes_are_refused(change: Any, message: str) -> None:
    registry = _registry()
    change(registry)
    with pytest.raises(BrokerConfigError, match=re.escape(message)):
        broker_access(registry, _profiles())


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = _registry()
    registry["mqtt"]["gateways"][0]["password"] = "plain"
    reg = tmp_path / "r.yaml"
    reg.write_text(yaml.safe_dump(registry), encoding="utf-8")
    assert main(["broker-config", "--registry", str(reg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plaintext" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "passwd").exists()


# -- the shipped broker config ----------------------------------------------------------------------------------
DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto.conf"


def make_certs(certs: Path, host: str) -> None:
    """The commands README ("Broker security", TLS) gives: a private CA and a server certificate."""
    certs.mkdir(parents=True)
    (certs / "san.ext").write_text(f"subjectAltName=IP:{host}\n")
    for cmd in (
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 -days 3650 -nodes "
        "-keyout ca.key -out ca.crt -subj /CN=Anxin-MQTT-CA",
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        f"-keyout server.key -out server.csr -subj /CN={host}",
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -sha256 "
        "-extfile san.ext -out server.crt",
    ):
        subprocess.run(cmd.split(), cwd=certs, check=True, capture_output=True)


def test_the_shipped_config_is_locked_and_its_tls_listener_works(tmp_path: Path) -> None:
    auth = _broker_config(_registry(), tmp_path)
    certs = tmp_path / "certs"
    make_certs(certs, "127.0.0.1")
    plain, tls = free_port(), free_port()
    text = DEPLOY_CONF.read_text()
    assert "allow_anonymous false" in text and "#listener 8883" in text
    text = "\n".join(line[1:] if line.startswith(("#listener 8883", "#certfile", "#keyfile", "#tls_version"))
                     else line for line in text.splitlines())
    text = (text.replace("listener 1883", f"listener {plain} 127.0.0.1")
            .replace("listener 8883", f"listener {tls} 127.0.0.1")
            .replace("/mosquitto/auth/", f"{auth}/").replace("/mosquitto/certs/", f"{certs}/")
            .replace("/mosquitto/data/", f"{tmp_path}/"))
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text + f"\nuser {getpass.getuser()}\nlog_dest stderr\n")
    with (tmp_path / "mosquitto.log").open("ab") as log:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
    try:
        wait_port(plain)
        wait_port(tls)
        assert not _accepted(plain, "nobody", "x")
        anonymous = Client(plain, None)
        anonymous.close()
        assert not anonymous.accepted
        gw = _gateway(plain)
        over_tls = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-bridge")
        over_tls.tls_set(ca_certs=str(certs / "ca.crt"))
        over_tls.username_pw_set("z2m-a", PASSWORDS["z2m-a"])
        over_tls.connect("127.0.0.1", tls)
        over_tls.loop_start()
        try:
            over_tls.publish("zigbee2mqtt/sos-a", _press("over-tls"), qos=1).wait_for_publish(10)
            gw.wait_for_payload(_press("over-tls"))
            over_tls.publish("zigbee2mqtt/sos-a", _press("y" * 70_000), qos=1)
            wait_for(lambda: "disconnected due to oversize packet" in (tmp_path / "mosquitto.log").read_text(),
                     what="max_packet_size applied")
        finally:
            over_tls.disconnect()
            over_tls.loop_stop()
            gw.close()
    finally:
        stop_process(proc)


def test_hash_password_from_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["broker-config", "--hash-password"]) == 0
    assert verify_password("correct horse", capsys.readouterr().out.strip())
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["broker-config", "--hash-password"]) == 2
    assert main(["broker-config", "--out", "x"]) == 2  # no --registry: one line, no traceback
    assert "Traceback" not in capsys.readouterr().err


def test_unknown_group_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = tmp_path / "r.yaml"
    reg.write_text(yaml.safe_dump(_registry()), encoding="utf-8")
    assert main(["broker-config", "--registry", str(reg), "--out", str(tmp_path / "o"),
                 "--group", "no-such-group-here"]) == 2
    assert "no group 'no-such-group-here'" in capsys.readouterr().err
