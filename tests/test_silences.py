"""Silences, maintenance windows, per-contact rate limits and grouping delays — and life-safety alarms
passing through all of them — from MQTT presses on a real mosquitto to a loopback webhook receiver."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from alerting import silences
from alerting.models import Delivery, EscalationStep, Silence
from program.system import Anxin as Gateway
from tests.harness import Publisher, gateway_settings, running_gateway, wait_for
from tests.servers.mosquitto import MosquittoServer
from tests.servers.webhook import WebhookReceiver
from tests.test_alerting import PRESS, SMOKE, directory, incidents, settings_for, timeline

ROOT = Path(__file__).resolve().parent.parent
BATTERY_LOW = b'{"smoke":false,"battery":5,"battery_low":true}'
TAMPER = b'{"smoke":false,"battery":90,"tamper":true}'


def start_window(gw: Gateway, seconds: float, **scope: Any) -> None:
    """A maintenance window (or silence) of ``seconds`` from now, added once the gateway runs, so its
    length does not depend on how long the gateway took to start."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {"kind": "maintenance", "institution": "xm-001", **scope}
    with gw.sessions.begin() as s:
        silences.add(s, starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(seconds=seconds),
                     reason="烟感年检 annual smoke check", created_by="contractor-a", **values)


def test_maintenance_holds_faults_until_it_ends_but_never_smoke(tmp_path: Path, mosquitto: MosquittoServer,
                                                                webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        start_window(gw, 8)
        pub.publish("zigbee2mqtt/smoke-nap", BATTERY_LOW)
        wait_for(lambda: bool(incidents(gw)) and "postponed" in timeline(gw, incidents(gw)[0].id),
                 what="fault held back")
        fault = incidents(gw)[0]
        assert fault.type == "fault.battery_low" and timeline(gw, fault.id)[:2] == ["opened", "silenced"]

        # Smoke during the same maintenance window: straight through to fire and contractor.
        pub.publish("zigbee2mqtt/smoke-nap", SMOKE)
        wait_for(lambda: "/fire-siming" in webhooks.paths(), what="fire station notified despite maintenance")
        smoke = next(i for i in incidents(gw) if i.type == "alarm.smoke")
        assert "silence_bypassed" in timeline(gw, smoke.id)
        assert webhooks.paths().count("/contractor") == 1  # the smoke message, not the fault

        # The window ends with the fault still unacknowledged: now the contractor hears of it.
        wait_for(lambda: webhooks.paths().count("/contractor") == 2, timeout=30, what="fault sent after maintenance")
        wait_for(lambda: timeline(gw, fault.id)[-1] == "notified", what="the notification recorded")


def test_acknowledged_during_a_silence_is_never_sent(tmp_path: Path, mosquitto: MosquittoServer,
                                                     webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        start_window(gw, 4, kind="silence", types=["fault.*"], device="smoke-nap")
        pub.publish("zigbee2mqtt/smoke-nap", BATTERY_LOW)
        wait_for(lambda: bool(incidents(gw)) and "postponed" in timeline(gw, incidents(gw)[0].id), what="held back")
        assert gw.alerting is not None
        gw.alerting.acknowledge(incidents(gw)[0].id, "值班员 duty officer", "console")
        time.sleep(5)  # past the silence's end
        assert webhooks.paths() == []
        with gw.sessions() as s:
            assert [st.status for st in s.scalars(select(EscalationStep))] == ["cancelled"]


def test_rate_limit_per_contact_spares_life_safety(tmp_path: Path, mosquitto: MosquittoServer,
                                                   webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port, alerting_contact_rate_per_hour=1)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/smoke-nap", BATTERY_LOW)
        wait_for(lambda: webhooks.paths() == ["/contractor"], what="first fault sent")
        wait_for(lambda: _delivered(gw) == 1, what="its delivery recorded")  # what the limit counts
        pub.publish("zigbee2mqtt/smoke-nap", TAMPER)
        wait_for(lambda: any("rate_limited" in timeline(gw, i.id) for i in incidents(gw)), what="second fault limited")
        assert webhooks.paths() == ["/contractor"]
        pub.publish("zigbee2mqtt/sos-front", PRESS)  # a panic press is never rate-limited
        wait_for(lambda: {"/police-siming", "/contractor"} <= set(webhooks.paths()[1:]), what="panic delivered")


def _delivered(gw: Any) -> int:
    with gw.sessions() as s:
        return len(s.scalars(select(Delivery).where(Delivery.ok.is_(True))).all())


def test_life_safety_skips_a_grouping_delay(tmp_path: Path, mosquitto: MosquittoServer,
                                            webhooks: WebhookReceiver) -> None:
    routes = tmp_path / "grouping.yaml"
    routes.write_text("""
routes:
  - {name: panic, match: {type: [alarm.panic]}, receivers: [police], policy: grouped}
  - {name: faults, match: {type: ["fault.*"]}, receivers: [contractor], policy: grouped}
policies:
  grouped: {steps: [{after_s: 30, roles: [$receivers]}]}
  drill: {steps: [{after_s: 0, roles: [drill]}]}
""")
    settings = gateway_settings(tmp_path, mqtt_port=mosquitto.port, telemetry_sink="sqlite", alerting_routes=routes,
                                alerting_tick_s=0.05)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/smoke-nap", BATTERY_LOW)
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: "/police-siming" in webhooks.paths(), what="panic sent at once")
        time.sleep(0.5)
        assert "/contractor" not in webhooks.paths()  # the fault waits its 30 s grouping delay
        with gw.sessions() as s:
            pending = s.scalars(select(EscalationStep).where(EscalationStep.status == "pending")).all()
        assert len(pending) == 1 and pending[0].due_at > datetime.now(UTC) + timedelta(seconds=25)


def test_cli_sets_a_maintenance_window(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/anxin.db"
    env = {**os.environ, "ANXIN_DATABASE_URL": db, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "program.cli", "silence", "--institution", "xm-001", "--types", "fault.*,device.*",
           "--minutes", "90", "--reason", "更换电池 battery change", "--by", "张工", "--maintenance"]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "maintenance 1" in done.stdout and "北京时间" in done.stdout
    bad = subprocess.run([*cmd[:-5], "--reason", " "], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "reason" in bad.stderr

    from anxin.db import init_db, make_engine

    engine = make_engine(db)
    with init_db(engine)() as s:
        [x] = s.scalars(select(Silence)).all()
        assert (x.kind, x.institution_id, x.types, x.created_by) == ("maintenance", "xm-001",
                                                                    ["fault.*", "device.*"], "张工")
        assert timedelta(minutes=89) < x.ends_at - x.starts_at <= timedelta(minutes=90)
    engine.dispose()


def test_a_smoke_alarm_that_already_cleared_still_notifies(tmp_path: Path, mosquitto: MosquittoServer,
                                                           webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/smoke-nap", SMOKE)
        pub.publish("zigbee2mqtt/smoke-nap", b'{"smoke":false,"battery":100}')  # cleared right away
        wait_for(lambda: {"/fire-siming", "/contractor"} <= set(webhooks.paths()), what="fire still notified")
        [incident] = incidents(gw)
        assert incident.state == "triggered" and incident.event_count == 2  # the clear is on its timeline


def test_registry_file_imports_silences(tmp_path: Path, webhooks: WebhookReceiver) -> None:
    registry = directory(webhooks.url)
    registry["silences"] = [{"kind": "maintenance", "institution": "xm-001", "types": ["fault.*"],
                             "starts_at": "2026-12-02T09:00:00", "ends_at": "2026-12-02T12:00:00",
                             "reason": "烟感年检", "created_by": "张工"}]
    with running_gateway(settings_for(tmp_path, 1), registry=registry, mqtt=False) as gw, gw.sessions() as s:
        [x] = s.scalars(select(Silence)).all()
    assert (x.kind, x.institution_id, x.types, x.created_by) == ("maintenance", "xm-001", ["fault.*"], "张工")
    assert x.starts_at == datetime(2026, 12, 2, 1, 0, tzinfo=UTC)  # naive times are Asia/Shanghai
