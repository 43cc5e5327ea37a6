"""Commissioning: a device is unverified until its test press has been seen end to end — decoded from a
real MQTT message, routed to the drill receivers during a drill window, and acknowledged by a person.
A device whose test press its profile cannot read stays unverified, and `anxin devices --unverified`
says so (exit 1)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from alerting.drills import drill_records
from alerting.models import Delivery, Incident, TimelineEntry
from anxin.db import Device, Verification, init_db, make_engine
from program.registry_file import import_registry
from program.system import Anxin as Gateway
from program.web import build_app as create_app
from tests.harness import Publisher, running_gateway, wait_for
from tests.servers.mosquitto import MosquittoServer
from tests.servers.webhook import WebhookReceiver
from tests.test_alerting import PRESS, directory, settings_for

# zigbee2mqtt-smoke reads the test button as "test": this press raises a `test` event.
TEST_PRESS = b'{"smoke":true,"test":true,"battery":100}'
# A detector whose firmware reports its test button as "self_test", a field zigbee2mqtt-smoke does not
# read: the message decodes (battery), but the press itself decodes to nothing.
UNREAD_TEST_PRESS = b'{"smoke":false,"self_test":true,"battery":97}'


def _window(minutes_before: float = 1, minutes_after: float = 10) -> dict[str, str]:
    now = time.time()
    fmt = "%Y-%m-%dT%H:%M:%S+00:00"
    return {"institution": "xm-001", "starts_at": time.strftime(fmt, time.gmtime(now - 60 * minutes_before)),
            "ends_at": time.strftime(fmt, time.gmtime(now + 60 * minutes_after)), "note": "设备调试 commissioning"}


def _registry(hook: str, drills: list[dict[str, str]]) -> dict[str, Any]:
    data = directory(hook)
    data["devices"].append({"id": "smoke-hall", "institution": "xm-001", "profile": "zigbee2mqtt-smoke",
                            "room": "大厅"})
    return {**data, "drills": drills}


def _device(gw: Gateway, device_id: str) -> Device:
    with gw.sessions() as s:
        device: Device | None = s.get(Device, device_id)
        assert device is not None
        return device


def _incident_of(gw: Gateway, device_id: str) -> Incident | None:
    with gw.sessions() as s:
        incident: Incident | None = s.scalars(select(Incident).where(Incident.device_id == device_id)).first()
        return incident


def _delivered(gw: Gateway, incident_id: int) -> bool:
    with gw.sessions() as s:
        q = select(Delivery.id).where(Delivery.incident_id == incident_id, Delivery.ok.is_(True))
        return s.scalars(q.limit(1)).first() is not None


def _readings(telemetry: Path, device_id: str) -> int:
    if not telemetry.exists():
        return 0
    with sqlite3.connect(telemetry) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM readings WHERE device_id = ?", (device_id,)).fetchone()[0])
        except sqlite3.OperationalError:  # table not created yet
            return 0


def anxin(database_url: str, cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it; the telemetry store is the embedded SQLite one in ``cwd`` unless told."""
    env = {**os.environ, "ANXIN_DATABASE_URL": database_url, "ANXIN_TELEMETRY_SINK": "sqlite",
           "ANXIN_SQLITE_TELEMETRY_PATH": str(cwd / "telemetry.db"),
           **{f"ANXIN_{k.upper()}": v for k, v in settings.items()}}
    return subprocess.run([sys.executable, "-m", "program.cli", *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=cwd)


def test_test_press_in_a_drill_window_acknowledged_verifies_the_device(
        tmp_path: Path, mosquitto: MosquittoServer, webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry=_registry(webhooks.url, [_window()])) as gw, \
            Publisher(mosquitto.port) as pub:
        assert {d: _device(gw, d).verification for d in ("sos-front", "smoke-nap", "smoke-hall")} == {
            "sos-front": Verification.UNVERIFIED, "smoke-nap": Verification.UNVERIFIED,
            "smoke-hall": Verification.UNVERIFIED}

        pub.publish("zigbee2mqtt/smoke-hall", UNREAD_TEST_PRESS)
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        pub.publish("zigbee2mqtt/smoke-nap", TEST_PRESS)
        wait_for(lambda: webhooks.paths().count("/drill") >= 2, what="both presses at the drill receiver")
        # the unreadable press did arrive and decode (its battery reading is stored) ...
        wait_for(lambda: _readings(settings.sqlite_telemetry_path, "smoke-hall") >= 1, what="smoke-hall reading")
        sos, nap = _incident_of(gw, "sos-front"), _incident_of(gw, "smoke-nap")
        assert sos is not None and nap is not None
        assert (sos.type, sos.drill, nap.type, nap.drill) == ("alarm.panic", True, "test", True)
        assert set(webhooks.paths()) == {"/drill"}  # never police, fire or the contractor
        # ... but raised no incident at all: nothing a person could acknowledge for it
        assert _incident_of(gw, "smoke-hall") is None

        # The drill receiver acknowledges the panic press through the link in its message.
        wait_for(lambda: _delivered(gw, sos.id), what="delivery to the drill receiver recorded")
        body = next(r.json() for r in webhooks.received if r.json()["incident_id"] == sos.id)
        http = TestClient(create_app(gw))
        token = body["ack_url"].removeprefix(f"{settings.public_url}/ack/")
        assert http.post("/ack", data={"token": token}).status_code == 200

        verified = _device(gw, "sos-front")
        assert verified.verification == Verification.VERIFIED
        assert (verified.verified_by, verified.verified_incident_id) == ("contact:drill-001", sos.id)
        assert verified.verified_at is not None
        with gw.sessions() as s:
            entry = s.scalars(select(TimelineEntry).where(TimelineEntry.incident_id == sos.id,
                                                          TimelineEntry.action == "device_verified")).one()
        assert entry.actor == "contact:drill-001" and entry.detail["device_id"] == "sos-front"

        # Not acknowledged: still unverified, however long it waits. The unreadable press: unverified.
        assert _device(gw, "smoke-nap").verification == Verification.UNVERIFIED
        assert _device(gw, "smoke-hall").verification == Verification.UNVERIFIED

        # Acknowledged by a person on the API, the test event verifies its device too.
        assert gw.alerting is not None
        wait_for(lambda: _delivered(gw, nap.id), what="test event delivered to the drill receiver")
        gw.alerting.transition(nap.id, "acknowledged", "installer-wang", "api")
        assert _device(gw, "smoke-nap").verified_by == "installer-wang"

    # As an installer scripts it: the unreadable device is listed, exit 1.
    out = anxin(settings.database_url, tmp_path, "devices", "--unverified")
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("设备 Device\t机构 Institution\t房间 Room\t配置 Profile\t验证 Verification")
    assert [line.split("\t")[0] for line in lines[1:]] == ["smoke-hall"]
    assert "未验证 UNVERIFIED" in lines[1] and "大厅" in lines[1] and "厦门市思明区小太阳托育园" in lines[1]
    assert lines[1].split("\t")[5] != "-"  # its battery reading was seen: last seen is set

    out = anxin(settings.database_url, tmp_path, "devices")
    assert out.returncode == 0, out.stderr
    rows = {line.split("\t")[0]: line for line in out.stdout.splitlines()[1:]}
    assert set(rows) == {"sos-front", "smoke-nap", "smoke-hall"}
    assert "已验证 verified" in rows["sos-front"] and f"(#{sos.id})" in rows["sos-front"]
    assert "zigbee2mqtt-sos-button" in rows["sos-front"] and "前台" in rows["sos-front"]

    # The quarterly record counts the unverified device of the institution.
    sessions = init_db(make_engine(settings.database_url))
    record = {r.institution_id: r for r in drill_records(sessions, *_this_quarter())}
    assert (record["xm-001"].unverified_devices, record["xm-002"].unverified_devices) == (1, 0)


def _this_quarter() -> tuple[int, int]:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    return now.year, (now.month - 1) // 3 + 1


def test_outside_a_drill_window_an_acknowledged_test_press_does_not_verify(
        tmp_path: Path, mosquitto: MosquittoServer, webhooks: WebhookReceiver) -> None:
    """Without a drill window the test event goes to the contractor, not the drill receivers: it proves
    nothing about the drill path, so acknowledging it leaves the device unverified."""
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry=_registry(webhooks.url, [])) as gw, Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/smoke-nap", TEST_PRESS)
        wait_for(lambda: "/contractor" in webhooks.paths(), what="contractor")
        incident = _incident_of(gw, "smoke-nap")
        assert incident is not None and not incident.drill and incident.type == "test"
        assert gw.alerting is not None
        gw.alerting.transition(incident.id, "acknowledged", "installer-wang", "api")
        assert _device(gw, "smoke-nap").verification == Verification.UNVERIFIED


def test_registering_again_with_another_profile_resets_verification(tmp_path: Path) -> None:
    sessions = init_db(make_engine(f"sqlite:///{tmp_path}/a.db"))
    registry = {"institutions": [{"id": "a", "name": "小太阳"}],
                "devices": [{"id": "d1", "institution": "a", "profile": "zigbee2mqtt-smoke"},
                            {"id": "d2", "institution": "a", "profile": "zigbee2mqtt-smoke"}]}
    import_registry(sessions, registry)
    with sessions.begin() as s:
        for device in s.scalars(select(Device)):
            device.verification, device.verified_by, device.verified_incident_id = Verification.VERIFIED, "x", 1
    import_registry(sessions, registry)  # the same again: still proven
    registry["devices"][1]["profile"] = "shelly-gen2-smoke"
    import_registry(sessions, registry)
    with sessions() as s:
        d1, d2 = s.get(Device, "d1"), s.get(Device, "d2")
        assert d1 is not None and d2 is not None
        assert d1.verification == Verification.VERIFIED
        assert (d2.verification, d2.verified_by, d2.verified_incident_id) == (Verification.UNVERIFIED, "", None)


def test_devices_cli_exit_codes_and_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    sessions = init_db(make_engine(url))
    import_registry(sessions, {"institutions": [{"id": "a", "name": "小太阳"}, {"id": "b", "name": "贝贝"}],
                               "devices": [{"id": "d1", "institution": "a", "profile": "zigbee2mqtt-smoke"},
                                           {"id": "d2", "institution": "b", "profile": "zigbee2mqtt-smoke"}]})
    with sessions.begin() as s:
        d2 = s.get(Device, "d2")
        assert d2 is not None
        d2.verification = Verification.VERIFIED

    out = anxin(url, tmp_path, "devices", "--unverified", "--institution", "b")
    assert (out.returncode, out.stdout.count("\n")) == (0, 1)  # header only: nothing to do at b
    out = anxin(url, tmp_path, "devices", "--unverified", "--institution", "a")
    assert out.returncode == 1 and out.stdout.splitlines()[1].startswith("d1\t小太阳\t-\tzigbee2mqtt-smoke\t未验证")
    out = anxin(url, tmp_path, "devices", "--institution", "nowhere")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == "anxin devices: 没有此机构 no institution 'nowhere'"
    out = anxin(f"postgresql+psycopg://anxin@127.0.0.1:{_closed_port()}/anxin", tmp_path, "devices")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert "database unavailable" in out.stderr

    out = anxin(url, tmp_path, "devices", telemetry_sink="influx", influx_url=f"http://127.0.0.1:{_closed_port()}")
    assert out.returncode == 0 and "d1\t小太阳" in out.stdout  # the registry is still listed
    assert "telemetry store unavailable" in out.stderr and "Traceback" not in out.stderr
    out = anxin(url, tmp_path, "drills", "2026Q5")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "2026Q4" in out.stderr

    out = anxin(url, tmp_path, "drills", "2026Q4")
    header, *rows = out.stdout.splitlines()
    assert header.endswith("\t未验证设备 Unverified devices")
    assert {r.split("\t")[0]: r.split("\t")[-1] for r in rows} == {"小太阳": "1", "贝贝": "0"}


def _closed_port() -> int:
    from tests.servers import free_port

    return free_port()  # nothing listens there
