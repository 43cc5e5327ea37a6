"""Issue 8: the institution hears of its own life-safety alarm at once. The default route tree sends the
first step of a panic, smoke or gas alarm to the institution's own contacts beside the contractor and the
police / fire station, and never drops police or fire. Checked on the shipped YAML and end to end: a
real panic press over MQTT reaches the staff's webhook in the first step, not 60 s later."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from alerting.models import Delivery
from alerting.routing import decide, expand_roles, load_routing, severity_of
from anxin.model import EventType
from tests.harness import Publisher, gateway_settings, running_gateway, wait_for
from tests.servers.mosquitto import MosquittoServer
from tests.servers.webhook import WebhookReceiver
from tests.test_alerting import PRESS, directory, incidents

RESPONDER = {EventType.PANIC: "police", EventType.SMOKE: "fire", EventType.GAS: "fire"}


@pytest.mark.parametrize("event_type", list(RESPONDER))
def test_first_step_of_a_life_safety_alarm_includes_the_institution(event_type: EventType) -> None:
    routing = load_routing()
    decision = decide(routing, event_type.value, severity_of(event_type), "思明区", "xm-001",
                      datetime.now(UTC), drill=False)
    assert decision is not None and decision.policy.steps[0].after_s == 0
    for step in decision.policy.steps:  # every step, the first included, keeps the responders
        roles = expand_roles(step.roles, decision.receivers)
        assert {"contractor", RESPONDER[event_type], "institution"} <= set(roles)


def test_a_drill_still_reaches_drill_receivers_only() -> None:
    decision = decide(load_routing(), "alarm.panic", "critical", "思明区", "xm-001", datetime.now(UTC), drill=True)
    assert decision is not None
    assert [expand_roles(s.roles, decision.receivers) for s in decision.policy.steps] == [["drill"]]


def test_panic_press_reaches_the_staff_in_the_first_step(tmp_path: Path, mosquitto: MosquittoServer,
                                                         webhooks: WebhookReceiver) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=mosquitto.port, telemetry_sink="sqlite",
                                alerting_retry_backoff_s=0.05, alerting_tick_s=0.05)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: {"/staff", "/police-siming", "/contractor"} <= set(webhooks.paths()),
                 what="staff, police and contractor")
        [incident] = incidents(gw)
        staff = next(r for r in webhooks.received if r.path == "/staff")
        assert staff.json()["step"] == 0 and staff.headers["X-Anxin-Delivery-Key"] == f"{incident.id}/0/staff-001"
        assert "一键报警" in staff.json()["title"]
        with gw.sessions() as s:
            keys = set(s.scalars(select(Delivery.key).where(Delivery.ok.is_(True))))
        assert {f"{incident.id}/0/{c}" for c in ("staff-001", "police-siming", "contractor-a")} <= keys
        assert "/fire-siming" not in webhooks.paths() and "/drill" not in webhooks.paths()
