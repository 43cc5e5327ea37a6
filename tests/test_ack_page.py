"""The acknowledge link: opening it (as chat apps do for previews) changes nothing; the page's button
(a POST carrying the token) acknowledges and stops the escalation. Real mosquitto, SQLite, webhooks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import select

from alerting.ack_links import make_token
from alerting.delivery import FEEDBACK_STEP
from alerting.models import EscalationStep, TimelineEntry
from program.web import build_app as create_app
from tests.harness import TEST_SECRET, Publisher, running_gateway, wait_for
from tests.servers.mosquitto import MosquittoServer
from tests.servers.webhook import WebhookReceiver
from tests.test_alerting import PRESS, directory, incidents, settings_for


def snapshot(gw: Any, incident_id: int) -> tuple[str, list[tuple[str, str]], list[str]]:
    """Everything the link could change: state, timeline, escalation steps (not the feedback an
    acknowledgement itself schedules for the institution and contractor)."""
    with gw.sessions() as s:
        timeline = [(e.action, e.actor) for e in s.scalars(
            select(TimelineEntry).where(TimelineEntry.incident_id == incident_id).order_by(TimelineEntry.id))]
        steps = [st.status for st in s.scalars(
            select(EscalationStep).where(EscalationStep.incident_id == incident_id,
                                         EscalationStep.step_no != FEEDBACK_STEP).order_by(EscalationStep.id))]
    return incidents(gw)[0].state, timeline, steps


def test_opening_the_link_changes_nothing_and_the_button_acknowledges(
        tmp_path: Path, mosquitto: MosquittoServer, webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port, second_step_s=600)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub, \
            TestClient(create_app(gw)) as http:
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: "/police-siming" in webhooks.paths(), what="police notified")
        ack_url = next(r for r in webhooks.received if r.path == "/police-siming").json()["ack_url"]
        path = ack_url.removeprefix(settings.public_url)
        [incident] = incidents(gw)
        wait_for(lambda: "notified" in [a for a, _ in snapshot(gw, incident.id)[1]], what="step 0 recorded")
        before = snapshot(gw, incident.id)
        assert before[0] == "triggered" and "pending" in before[2]  # the second step waits

        # What a chat app's link preview, a mail scanner or a curious tap does: GET (and HEAD), repeatedly.
        for _ in range(3):
            page = http.get(path)
            assert page.status_code == 200
        assert http.head(path).status_code in (200, 405)
        assert snapshot(gw, incident.id) == before

        text = page.text
        opened = incident.opened_at.astimezone(ZoneInfo("Asia/Shanghai"))
        for expected in ("一键报警", "Panic alarm", "厦门市思明区小太阳托育园", "前台", "sos-front", "待处理",
                         opened.strftime("%Y-%m-%d %H:%M"), "北京时间", "确认收到 Acknowledge"):
            assert expected in text, expected
        assert 'name="viewport"' in text and "<style>" in text
        assert not re.search(r"<script|<link|src=|https?://", text), "self-contained: nothing fetched"
        assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
        token = re.search(r'name="token" value="([^"]+)"', text)
        assert token is not None and token.group(1) == path.removeprefix("/ack/")
        assert 'method="post" action="../ack"' in text

        # The button: a POST with the token acknowledges and cancels the pending escalation.
        done = http.post("/ack", data={"token": token.group(1)})
        assert done.status_code == 200 and "已确认收到" in done.text and "Acknowledged" in done.text
        state, timeline, steps = snapshot(gw, incident.id)
        assert state == "acknowledged" and "pending" not in steps and "cancelled" in steps
        assert ("acknowledged", "contact:police-siming") in timeline
        assert "确认收到 Acknowledge" not in done.text  # no second button

        again = http.post("/ack", data={"token": token.group(1)})
        assert again.status_code == 200 and "已由他人" in again.text
        assert snapshot(gw, incident.id)[0] == "acknowledged"


def test_bad_expired_and_missing_tokens_are_refused_as_pages(tmp_path: Path, mosquitto: MosquittoServer,
                                                             webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port, second_step_s=600)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub, \
            TestClient(create_app(gw)) as http:
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: bool(incidents(gw)), what="incident")
        incident_id = incidents(gw)[0].id
        good = make_token(TEST_SECRET.encode(), incident_id, "police-siming")
        forged = make_token(b"change-me", incident_id, "police-siming")
        expired = make_token(TEST_SECRET.encode(), incident_id, "police-siming", ttl_s=-10)
        for token, why in ((forged, "链接无效"), (expired, "链接已过期"), (good[:-2] + "xx", "链接无效"),
                           ("not-a-token", "链接无效")):
            for resp in (http.get(f"/ack/{token}"), http.post("/ack", data={"token": token})):
                assert resp.status_code == 403 and why in resp.text
                assert resp.headers["content-type"].startswith("text/html")
        assert http.post("/ack", data={}).status_code == 403
        assert http.post("/ack", content=b"\xff\xfe garbage").status_code == 403
        missing = make_token(TEST_SECRET.encode(), 2**70, "police-siming")  # signed, but no such incident
        assert http.get(f"/ack/{missing}").status_code == 404
        assert http.post("/ack", data={"token": missing}).status_code == 404
        assert incidents(gw)[0].state == "triggered"
        assert http.post("/ack", data={"token": good}).status_code == 200
        assert incidents(gw)[0].state == "acknowledged"


def test_rotated_secret_keeps_sent_links_working_until_removed(tmp_path: Path, mosquitto: MosquittoServer,
                                                               webhooks: WebhookReceiver) -> None:
    old_secret = "the-previous-ack-link-secret-000000000000"
    new_secret = "the-current-ack-link-secret-1111111111111"
    settings = settings_for(tmp_path, mosquitto.port, second_step_s=600, alerting_secret=new_secret,
                            alerting_secrets_previous=[old_secret])
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub, \
            TestClient(create_app(gw)) as http:
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: "/police-siming" in webhooks.paths(), what="police notified")
        incident_id = incidents(gw)[0].id
        sent = next(r for r in webhooks.received if r.path == "/police-siming").json()["ack_url"]
        token = sent.rsplit("/", 1)[1]
        assert token == make_token(new_secret.encode(), incident_id, "police-siming",
                                   now=int(token.split(".")[2]) - settings.ack_link_ttl_s)  # new secret signs
        before_rotation = make_token(old_secret.encode(), incident_id, "police-siming")
        assert http.get(f"/ack/{before_rotation}").status_code == 200  # the previous secret still verifies
        gw.settings.alerting_secrets_previous = []  # removed from the list
        assert http.get(f"/ack/{before_rotation}").status_code == 403
        assert http.get(f"/ack/{token}").status_code == 200
