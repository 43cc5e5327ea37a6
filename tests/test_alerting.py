"""Alerting end to end with real peers: mosquitto in, a loopback HTTP receiver for webhooks, aiosmtpd
for email, SQLite/PostgreSQL for incidents. A panic press must reach the police; nobody acknowledging
escalates; a channel that fails is retried and recorded; a restart does not lose or repeat a step."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message
from fastapi.testclient import TestClient
from sqlalchemy import select

from alerting.engine import TransitionError
from alerting.models import Delivery, EscalationStep, Incident, TimelineEntry
from anxin.db import EventRecord
from program.web import build_app as create_app
from tests.harness import Publisher, gateway_settings, running_gateway, wait_for
from tests.servers import free_port
from tests.servers.mosquitto import MosquittoServer
from tests.servers.webhook import WebhookReceiver

FAST_ROUTES = """
routes:
  - {name: panic, match: {type: [alarm.panic]}, receivers: [contractor, police], policy: life_safety}
  - {name: fire, match: {type: [alarm.smoke, alarm.gas]}, receivers: [contractor, fire], policy: life_safety}
  - {name: faults, match: {type: ["fault.*", "device.*", test]}, receivers: [contractor], policy: faults}
policies:
  life_safety:
    steps: [{after_s: 0, roles: [$receivers]}, {after_s: %(second)s, roles: [$receivers, institution]}]
    repeat_every_s: %(second)s
    max_repeats: 1
  faults: {steps: [{after_s: 0, roles: [$receivers]}]}
  drill: {steps: [{after_s: 0, roles: [drill]}]}
"""
PRESS = b'{"action":"emergency","battery":100,"linkquality":80}'
SMOKE = b'{"smoke":true,"battery":100}'


def directory(hook: str, **extra: Any) -> dict[str, Any]:
    return {
        "institutions": [{"id": "xm-001", "name": "厦门市思明区小太阳托育园", "district": "思明区"},
                         {"id": "xm-002", "name": "厦门市湖里区贝贝托育中心", "district": "湖里区"}],
        "devices": [
            {"id": "sos-front", "institution": "xm-001", "profile": "zigbee2mqtt-sos-button", "name": "前台一键报警",
             "room": "前台"},
            {"id": "smoke-nap", "institution": "xm-001", "profile": "zigbee2mqtt-smoke", "room": "午睡室"},
        ],
        "contacts": [
            {"id": "police-siming", "role": "police", "district": "思明区", "webhook_url": f"{hook}/police-siming",
             "webhook_secret": "police-secret"},
            {"id": "police-huli", "role": "police", "district": "湖里区", "webhook_url": f"{hook}/police-huli"},
            {"id": "fire-siming", "role": "fire", "district": "思明区", "webhook_url": f"{hook}/fire-siming"},
            {"id": "contractor-a", "role": "contractor", "institution": "xm-001", "webhook_url": f"{hook}/contractor"},
            {"id": "staff-001", "role": "institution", "institution": "xm-001", "webhook_url": f"{hook}/staff",
             **extra},
            {"id": "drill-001", "role": "drill", "institution": "xm-001", "webhook_url": f"{hook}/drill"},
        ],
    }


def settings_for(tmp_path: Path, mqtt_port: int, second_step_s: float = 30.0, **overrides: Any) -> Any:
    routes = tmp_path / "routes.yaml"
    routes.write_text(FAST_ROUTES % {"second": second_step_s})
    return gateway_settings(tmp_path, mqtt_port=mqtt_port, telemetry_sink="sqlite", alerting_routes=routes,
                            alerting_retry_backoff_s=0.05, alerting_tick_s=0.05, **overrides)


def incidents(gw: Any) -> list[Incident]:
    with gw.sessions() as s:
        return list(s.scalars(select(Incident).order_by(Incident.id)))


def timeline(gw: Any, incident_id: int) -> list[str]:
    with gw.sessions() as s:
        q = select(TimelineEntry.action).where(TimelineEntry.incident_id == incident_id).order_by(TimelineEntry.id)
        return list(s.scalars(q))


def test_panic_press_over_mqtt_reaches_police_webhook(tmp_path: Path, mosquitto: MosquittoServer,
                                                      webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: {"/police-siming", "/contractor"} <= set(webhooks.paths()), what="police + contractor")
        assert "/police-huli" not in webhooks.paths() and "/fire-siming" not in webhooks.paths()

        police = next(r for r in webhooks.received if r.path == "/police-siming")
        body = police.json()
        assert body["type"] == "alarm.panic" and body["institution"] == "厦门市思明区小太阳托育园"
        assert "一键报警" in body["title"] and "前台" in body["text"] and "Panic alarm" in body["text"]
        expected = hmac.new(b"police-secret", police.headers["X-Anxin-Timestamp"].encode() + b"." + police.body,
                            hashlib.sha256).hexdigest()
        assert police.headers["X-Anxin-Signature"] == f"sha256={expected}"

        [incident] = incidents(gw)
        assert (incident.type, incident.state, incident.severity, incident.route) == (
            "alarm.panic", "triggered", "critical", "panic")
        wait_for(lambda: "notified" in timeline(gw, incident.id), what="timeline")
        assert timeline(gw, incident.id)[:2] == ["opened", "notified"]

        # The link in the message shows the incident; its button acknowledges and stops the escalation.
        http = TestClient(create_app(gw))
        ack_path = body["ack_url"].removeprefix(settings.public_url)
        page = http.get(ack_path)
        assert page.status_code == 200 and "一键报警" in page.text and incidents(gw)[0].state == "triggered"
        page = http.post("/ack", data={"token": ack_path.removeprefix("/ack/")})
        assert page.status_code == 200 and "已确认" in page.text
        assert incidents(gw)[0].state == "acknowledged"
        with gw.sessions() as s:
            statuses = sorted(st.status for st in s.scalars(select(EscalationStep)
                                                            .where(EscalationStep.feedback.is_(None))))
        assert statuses == ["cancelled", "sent"]
        # ... and the institution and the contractor hear back who acknowledged it (tests/test_feedback.py)
        wait_for(lambda: sum(r.json()["type"] == "incident.acknowledged" for r in list(webhooks.received)) == 2,
                 what="feedback to staff and contractor")
        assert http.get(ack_path[:-3] + "xyz").status_code == 403


def test_repeated_presses_append_to_the_open_incident(tmp_path: Path, mosquitto: MosquittoServer,
                                                      webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port, duplicate_window_s=0)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        for _ in range(3):
            pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: bool(incidents(gw)) and incidents(gw)[0].event_count == 3, what="3 events")
        assert len(incidents(gw)) == 1
        assert gw.alerting is not None
        with pytest.raises(TransitionError, match="closure code"):
            gw.alerting.transition(incidents(gw)[0].id, "resolved", "duty officer")
        gw.alerting.transition(incidents(gw)[0].id, "resolved", "duty officer", closure_code="false_alarm",
                               note="孩子误按 / pressed by a child")
        pub.publish("zigbee2mqtt/sos-front", PRESS)  # after resolution: a new incident
        wait_for(lambda: len(incidents(gw)) == 2, what="second incident")
        first = incidents(gw)[0]
        assert first.false_alarm and first.open_key is None and first.state == "resolved"


def test_nobody_acknowledges_so_it_escalates(tmp_path: Path, mosquitto: MosquittoServer,
                                             webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port, second_step_s=0.5)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/smoke-nap", SMOKE)
        # step 0: contractor + fire; step 1 (0.5 s later): + institution staff; then one repeat
        wait_for(lambda: webhooks.paths().count("/fire-siming") == 3, timeout=15, what="two steps and a repeat")
        # the staff's delivery of the same step runs beside the fire station's: wait for it too
        wait_for(lambda: webhooks.paths().count("/staff") == 2, timeout=15, what="staff in both steps")
        time.sleep(1.2)
        assert webhooks.paths().count("/fire-siming") == 3  # max_repeats reached: no more
        [incident] = incidents(gw)
        assert timeline(gw, incident.id).count("notified") == 3


def test_channel_down_then_up_is_retried_and_recorded(tmp_path: Path, mosquitto: MosquittoServer,
                                                      webhooks: WebhookReceiver) -> None:
    webhooks.fail_next["/police-siming"] = 2
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: "/police-siming" in webhooks.paths(), what="police after retries")
        with gw.sessions() as s:
            attempts = [(d.attempt, d.ok) for d in s.scalars(
                select(Delivery).where(Delivery.contact_id == "police-siming").order_by(Delivery.id))]
        assert attempts == [(1, False), (2, False), (3, True)]


def test_unreachable_step_brings_the_next_step_forward(tmp_path: Path, mosquitto: MosquittoServer,
                                                       webhooks: WebhookReceiver) -> None:
    """Every receiver of step 0 is down: step 1 (institution staff) must not wait its 30 s."""
    webhooks.fail_next["/contractor"] = 3
    webhooks.fail_next["/police-siming"] = 3
    settings = settings_for(tmp_path, mosquitto.port, second_step_s=30)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: "/staff" in webhooks.paths(), timeout=10, what="staff reached early")
        assert "delivery_failed" in timeline(gw, incidents(gw)[0].id)


def test_restart_in_the_middle_of_an_escalation(tmp_path: Path, mosquitto: MosquittoServer,
                                                webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port, second_step_s=2.0)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: "/police-siming" in webhooks.paths(), what="step 0")
    assert "/staff" not in webhooks.paths()  # stopped before step 1 was due
    with running_gateway(settings) as gw:
        wait_for(lambda: "/staff" in webhooks.paths(), timeout=15, what="step 1 after restart")
        time.sleep(0.5)
        assert webhooks.paths().count("/police-siming") == 2  # step 0 once, step 1 once: nothing twice
        assert webhooks.paths().count("/staff") == 1
        assert len(incidents(gw)) == 1


def test_drill_window_goes_to_drill_receivers_only(tmp_path: Path, mosquitto: MosquittoServer,
                                                   webhooks: WebhookReceiver) -> None:
    now = time.time()
    drill = {"institution": "xm-001", "starts_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - 60)),
             "ends_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now + 600)), "note": "季度消防演练"}
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry={**directory(webhooks.url), "drills": [drill]}) as gw, \
            Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/smoke-nap", SMOKE)
        wait_for(lambda: "/drill" in webhooks.paths(), what="drill receiver")
        time.sleep(0.5)
        assert webhooks.paths() == ["/drill"]  # never fire, police or the contractor
        [incident] = incidents(gw)
        assert incident.drill and "演练" in webhooks.received[0].json()["title"]


def test_email_channel_with_a_real_smtp_server(tmp_path: Path, mosquitto: MosquittoServer,
                                               webhooks: WebhookReceiver) -> None:
    mails: list[Any] = []

    class Collect(Message):
        def handle_message(self, message: Any) -> None:
            mails.append(message)

    smtp_port = free_port()
    controller = Controller(Collect(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        settings = settings_for(tmp_path, mosquitto.port, second_step_s=0.3, smtp_host="127.0.0.1",
                                smtp_port=smtp_port, smtp_sender="alarm@anxin.example")
        registry = directory(webhooks.url, email="director@nursery.example")
        with running_gateway(settings, registry=registry), Publisher(mosquitto.port) as pub:
            pub.publish("zigbee2mqtt/sos-front", PRESS)
            wait_for(lambda: bool(mails), timeout=15, what="email")
    finally:
        controller.stop()
    mail = mails[0]
    assert mail["To"] == "director@nursery.example"
    assert "一键报警" in str(mail["Subject"]) or "=?utf-8?" in str(mail["Subject"]).lower()
    assert "/ack/" in mail.get_payload(decode=True).decode("utf-8")


def test_chat_robots_get_their_documented_formats(tmp_path: Path, mosquitto: MosquittoServer,
                                                  webhooks: WebhookReceiver) -> None:
    registry = directory(webhooks.url)
    registry["contacts"] += [
        {"id": "ding", "role": "contractor", "institution": "xm-001", "channel": "dingtalk",
         "channel_address": f"{webhooks.url}/robot/send?access_token=t1", "channel_secret": "SECding"},
        {"id": "wecom", "role": "contractor", "institution": "xm-001", "channel": "wecom",
         "channel_address": f"{webhooks.url}/cgi-bin/webhook/send?key=k1"},
        {"id": "feishu", "role": "contractor", "institution": "xm-001", "channel": "feishu",
         "channel_address": f"{webhooks.url}/open-apis/bot/v2/hook/h1", "channel_secret": "feishu-secret"},
    ]
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry=registry), Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: sum(p.startswith(("/robot", "/cgi-bin", "/open-apis")) for p in webhooks.paths()) == 3,
                 what="three robots")
    by = {r.path.split("?")[0]: r for r in webhooks.received}
    ding = by["/robot/send"]
    query = dict(pair.split("=", 1) for pair in ding.path.split("?")[1].split("&"))
    ts = int(query["timestamp"])
    expected = base64.b64encode(hmac.new(b"SECding", f"{ts}\nSECding".encode(), hashlib.sha256).digest()).decode()
    assert unquote_plus(query["sign"]) == expected and query["access_token"] == "t1"
    assert ding.json()["msgtype"] == "text" and "一键报警" in ding.json()["text"]["content"]
    assert by["/cgi-bin/webhook/send"].json()["text"]["content"].startswith("【一键报警】")
    feishu = by["/open-apis/bot/v2/hook/h1"].json()
    key = f"{feishu['timestamp']}\nfeishu-secret".encode()
    assert feishu["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert feishu["msg_type"] == "text" and "Panic alarm" in feishu["content"]["text"]


def test_event_committed_before_a_crash_still_alerts(tmp_path: Path, mosquitto: MosquittoServer,
                                                     webhooks: WebhookReceiver) -> None:
    """The events table is the alarm queue: an event stored but not yet turned into an incident when the
    gateway died is picked up by the next start."""
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw:
        pass  # creates the schema and the alerting cursor
    with gw.sessions.begin() as s:  # what the writer had committed when the process died
        s.add(EventRecord(device_id="smoke-nap", institution_id="xm-001", type="alarm.smoke", state="active",
                          ts=datetime.now(UTC), received_at=datetime.now(UTC), source="mqtt:zigbee2mqtt/smoke-nap",
                          detail={}))
    with running_gateway(settings) as gw:
        wait_for(lambda: "/fire-siming" in webhooks.paths(), what="fire station after restart")
        assert [i.type for i in incidents(gw)] == ["alarm.smoke"]
