"""Issue 8: the institution and the contractor hear back when someone acknowledges or dispatches an
incident, and who (with the guard's name); every step of handling an incident is a timestamped timeline
row; notes in any state; closure codes in one place; the calls are safe from HTTP threads while the
engine runs. Real mosquitto, real webhook receivers, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from alerting.channels.webhook import WebhookChannel
from alerting.engine import CLOSURE_CODES, AlertingEngine, AlertingOptions, IncidentNotFound, TransitionError
from alerting.messages import SHANGHAI
from alerting.models import (
    CLOSURE_LABELS,
    ClosureCode,
    Contact,
    Delivery,
    DrillWindow,
    EscalationStep,
    Incident,
    StepStatus,
    TimelineAction,
    TimelineEntry,
)
from alerting.routing import load_routing
from anxin.db import Device, Institution, init_db, make_engine
from anxin.metrics import Metrics
from anxin.model import Event, EventState, EventType
from program.registry_file import import_registry
from program.web import build_app as create_app
from tests.harness import Publisher, running_gateway, wait_for
from tests.servers.mosquitto import MosquittoServer
from tests.servers.postgres import PostgresServer
from tests.servers.webhook import Received, WebhookReceiver
from tests.test_alerting import PRESS, SMOKE, directory, incidents, settings_for

ACK, DISPATCHED = "incident.acknowledged", "incident.dispatched"


def feedback(webhooks: WebhookReceiver, kind: str) -> dict[str, Received]:
    """path -> the feedback message of ``kind`` it received (at most one each is expected)."""
    out: dict[str, Received] = {}
    for r in list(webhooks.received):
        if r.json().get("type") == kind:
            assert r.path not in out, f"{kind} twice to {r.path}"
            out[r.path] = r
    return out


def rows(sessions: Any, incident_id: int) -> list[TimelineEntry]:
    with sessions() as s:
        return list(s.scalars(select(TimelineEntry).where(TimelineEntry.incident_id == incident_id)
                              .order_by(TimelineEntry.id)))


def local(at: datetime | None) -> str:
    assert at is not None
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def test_acknowledge_then_dispatch_tells_institution_and_contractor_who(
        tmp_path: Path, mosquitto: MosquittoServer, webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry=directory(webhooks.url, name="园长 李老师")) as gw, \
            Publisher(mosquitto.port) as pub:
        assert gw.alerting is not None
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: {"/police-siming", "/contractor"} <= set(webhooks.paths()), what="step 0")
        [incident] = incidents(gw)

        with pytest.raises(TransitionError, match="guard"):
            gw.alerting.transition(incident.id, "acknowledged", "保安公司值班台", guard="王师傅")
        acked = gw.alerting.transition(incident.id, "acknowledged", "保安公司值班台", "api")
        wait_for(lambda: set(feedback(webhooks, ACK)) == {"/staff", "/contractor"}, what="acknowledged feedback")
        staff = feedback(webhooks, ACK)["/staff"]
        body = staff.json()
        assert body["actor"] == "保安公司值班台" and body["incident_type"] == "alarm.panic" and not body["drill"]
        when = local(acked.acknowledged_at)
        assert f"已由 保安公司值班台 于 {when}（北京时间）确认" in body["text"]
        assert f"Acknowledged by 保安公司值班台 at {when} (Asia/Shanghai)" in body["text"]
        assert body["text"].index("已由") < body["text"].index("Acknowledged by")  # zh-CN first
        assert staff.headers["X-Anxin-Delivery-Key"] == f"{incident.id}/acknowledged/staff-001"
        assert "/police-siming" not in feedback(webhooks, ACK)  # the police need no feedback

        dispatched = gw.alerting.transition(incident.id, "dispatched", "保安公司值班台", guard=" 王师傅 ",
                                            note="巡逻车 3 号 patrol car 3")
        assert dispatched.dispatched_guard == "王师傅" and dispatched.state == "dispatched"
        wait_for(lambda: set(feedback(webhooks, DISPATCHED)) == {"/staff", "/contractor"}, what="dispatch feedback")
        body = feedback(webhooks, DISPATCHED)["/contractor"].json()
        assert body["guard"] == "王师傅" and "派出保安 王师傅" in body["text"]
        assert "guard 王师傅 is on the way" in body["text"]

        with gw.sessions() as s:
            stored = s.get(Incident, incident.id)
            assert stored is not None and stored.dispatched_guard == "王师傅" and stored.dispatched_at is not None

        def delivered_keys() -> list[str]:  # the answers are recorded just after the receiver has the message
            with gw.sessions() as s:
                return sorted(s.scalars(select(Delivery.key).where(Delivery.ok.is_(True),
                                                                   Delivery.key.like("%/dispatched/%"))))

        wait_for(lambda: len(delivered_keys()) == 2, what="dispatch feedback recorded")
        assert delivered_keys() == [f"{incident.id}/dispatched/contractor-a", f"{incident.id}/dispatched/staff-001"]
        timeline = rows(gw.sessions, incident.id)
        [moved] = [e for e in timeline if e.action == "dispatched"]
        assert moved.detail == {"closure_code": None, "note": "巡逻车 3 号 patrol car 3", "guard": "王师傅"}
        assert (moved.actor, moved.channel) == ("保安公司值班台", "api")
        wait_for(lambda: len([e for e in rows(gw.sessions, incident.id) if e.channel == "feedback"]) == 2,
                 what="both feedback rounds recorded")
        told = [e for e in rows(gw.sessions, incident.id) if e.channel == "feedback"]
        assert all(e.action == TimelineAction.NOTIFIED for e in told)
        assert [(e.detail["feedback"], e.detail["delivered"]) for e in told] == [("acknowledged", 2), ("dispatched", 2)]
        ats = [e.at for e in rows(gw.sessions, incident.id)]
        assert ats == sorted(ats) and all(a.tzinfo is not None for a in ats)


def test_the_contact_who_acknowledged_by_link_is_not_told_again(
        tmp_path: Path, mosquitto: MosquittoServer, webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port)
    registry = directory(webhooks.url)
    registry["contacts"][3]["name"] = "安保监控中心"  # contractor-a
    with running_gateway(settings, registry=registry) as gw, Publisher(mosquitto.port) as pub:
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: "/contractor" in webhooks.paths(), what="contractor notified")
        link = next(r for r in webhooks.received if r.path == "/contractor").json()["ack_url"]
        page = TestClient(create_app(gw)).post("/ack", data={"token": link.rsplit("/", 1)[1]})
        assert page.status_code == 200 and incidents(gw)[0].state == "acknowledged"
        wait_for(lambda: "/staff" in feedback(webhooks, ACK), what="staff told")
        body = feedback(webhooks, ACK)["/staff"].json()
        assert body["actor"] == "安保监控中心" and "已由 安保监控中心 于" in body["text"]
        wait_for(lambda: any(e.channel == "feedback" for e in rows(gw.sessions, incidents(gw)[0].id)),
                 what="feedback round recorded")
        assert "/contractor" not in feedback(webhooks, ACK)  # it pressed the link itself


def test_feedback_is_retried_while_the_staff_webhook_fails(
        tmp_path: Path, mosquitto: MosquittoServer, webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port, life_safety_retry_s=0.2)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        assert gw.alerting is not None
        pub.publish("zigbee2mqtt/smoke-nap", SMOKE)
        wait_for(lambda: "/fire-siming" in webhooks.paths(), what="fire station")
        webhooks.fail_next["/staff"] = 5  # the first round's 3 attempts and 2 retry rounds
        gw.alerting.transition(incidents(gw)[0].id, "acknowledged", "duty officer")
        wait_for(lambda: "/staff" in feedback(webhooks, ACK), timeout=30, what="feedback after retries")
        wait_for(lambda: _staff_tries(gw)[-1].status == "delivered", what="the answer recorded")
        tries = _staff_tries(gw)
        assert [d.status for d in tries] == ["failed"] * 5 + ["delivered"]
        assert [d.attempt for d in tries] == [1, 2, 3, 4, 5, 6] and len({d.key for d in tries}) == 1
        assert webhooks.failed_paths().count("/staff") == 5


def _staff_tries(gw: Any) -> list[Delivery]:
    with gw.sessions() as s:
        return list(s.scalars(select(Delivery).where(Delivery.contact_id == "staff-001",
                                                     Delivery.key.like("%/acknowledged/%")).order_by(Delivery.id)))


def test_drill_feedback_goes_to_drill_receivers_only(tmp_path: Path, mosquitto: MosquittoServer,
                                                     webhooks: WebhookReceiver) -> None:
    now = time.time()
    drill = {"institution": "xm-001", "starts_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - 60)),
             "ends_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now + 600)), "note": "季度消防演练"}
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry={**directory(webhooks.url), "drills": [drill]}) as gw, \
            Publisher(mosquitto.port) as pub:
        assert gw.alerting is not None
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: "/drill" in webhooks.paths(), what="drill receiver")
        gw.alerting.transition(incidents(gw)[0].id, "dispatched", "演练督导", guard="张队长")
        wait_for(lambda: "/drill" in feedback(webhooks, DISPATCHED), what="drill feedback")
        body = feedback(webhooks, DISPATCHED)["/drill"].json()
        assert body["drill"] and body["title"].startswith("【演练】") and "[DRILL]" in body["text"]
        wait_for(lambda: any(e.channel == "feedback" for e in rows(gw.sessions, incidents(gw)[0].id)),
                 what="feedback round recorded")
        assert set(webhooks.paths()) == {"/drill"}  # never the staff, contractor or police


def test_notes_in_any_state_and_closure_codes(tmp_path: Path, mosquitto: MosquittoServer,
                                              webhooks: WebhookReceiver) -> None:
    assert tuple(ClosureCode) == CLOSURE_CODES and set(CLOSURE_LABELS) == set(ClosureCode)
    assert all(zh and en and zh != en for zh, en in CLOSURE_LABELS.values())
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        assert gw.alerting is not None
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: bool(incidents(gw)), what="incident")
        incident_id = incidents(gw)[0].id
        notes = [gw.alerting.add_note(incident_id, "保安公司值班台", "已电话联系园长 / called the director")]
        with pytest.raises(TransitionError, match="closure code"):
            gw.alerting.transition(incident_id, "resolved", "保安公司值班台", closure_code="oops", note="x")
        gw.alerting.transition(incident_id, "resolved", "保安公司值班台", closure_code=ClosureCode.FALSE_ALARM,
                               note="孩子误按 / pressed by a child")
        notes.append(gw.alerting.add_note(incident_id, "卫健委 reviewer", "  复盘：加装按钮保护盖  ", "console"))
        gw.alerting.transition(incident_id, "reviewed", "卫健委 reviewer")
        notes.append(gw.alerting.add_note(incident_id, "卫健委 reviewer", "已归档 / filed"))
        with pytest.raises(TransitionError, match="text"):
            gw.alerting.add_note(incident_id, "x", "   ")
        with pytest.raises(IncidentNotFound):
            gw.alerting.add_note(incident_id + 99, "x", "note")
        with pytest.raises(TransitionError, match="4000"):
            gw.alerting.add_note(incident_id, "x", "长" * 4001)
        stored = [e for e in rows(gw.sessions, incident_id) if e.action == TimelineAction.NOTE]
        assert [(e.id, e.actor, e.channel, e.detail["note"]) for e in stored] == [
            (n.id, n.actor, n.channel, n.detail["note"]) for n in notes]
        assert [e.detail["note"] for e in stored] == ["已电话联系园长 / called the director", "复盘：加装按钮保护盖",
                                                       "已归档 / filed"]
        assert stored[1].channel == "console" and all(e.at is not None for e in stored)
        resolved = incidents(gw)[0]
        assert resolved.state == "reviewed" and resolved.closure_code == "false_alarm" and resolved.false_alarm


def hammer(engine: AlertingEngine, incident_id: int, threads: int = 8) -> tuple[list[str], list[str]]:
    """``threads`` threads at once, as HTTP requests would: each acknowledges, dispatches and adds a note.
    Returns the transitions that succeeded and the errors of those refused."""
    barrier = threading.Barrier(threads)
    done: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def act(n: int) -> None:
        barrier.wait()
        for to, extra in (("acknowledged", {}), ("dispatched", {"guard": f"保安{n}"})):
            try:
                engine.transition(incident_id, to, f"operator-{n}", **extra)
                with lock:
                    done.append(to)
            except TransitionError as exc:
                with lock:
                    refused.append(str(exc))
        engine.add_note(incident_id, f"operator-{n}", f"note {n}")

    workers = [threading.Thread(target=act, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return done, refused


def check_hammered(sessions: Any, incident_id: int, done: list[str], refused: list[str], threads: int) -> None:
    # each state is reached exactly once, whoever raced for it; every note is kept
    assert sorted(done) in (["acknowledged", "dispatched"], ["dispatched"]), done
    assert len(refused) == 2 * threads - len(done) and all("cannot become" in r for r in refused)
    timeline = rows(sessions, incident_id)
    assert sorted(e.detail["note"] for e in timeline if e.action == "note") == sorted(
        f"note {n}" for n in range(threads))
    assert sorted(e.action for e in timeline if e.action in ("acknowledged", "dispatched")) == sorted(done)
    with sessions() as s:
        steps = list(s.scalars(select(EscalationStep).where(EscalationStep.incident_id == incident_id,
                                                            EscalationStep.feedback.is_not(None))))
        incident = s.get(Incident, incident_id)
        assert incident is not None and incident.state == "dispatched"
        [dispatch] = [e for e in timeline if e.action == "dispatched"]
        assert incident.dispatched_guard == dispatch.detail["guard"]
    assert sorted(st.feedback or "" for st in steps) == sorted(done)


def test_concurrent_calls_from_http_threads_while_the_engine_runs_sqlite(
        tmp_path: Path, mosquitto: MosquittoServer, webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port)
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        assert gw.alerting is not None
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: bool(incidents(gw)), what="incident")
        incident_id = incidents(gw)[0].id
        done, refused = hammer(gw.alerting, incident_id)
        check_hammered(gw.sessions, incident_id, done, refused, 8)
        wait_for(lambda: "/staff" in feedback(webhooks, DISPATCHED), what="dispatch feedback sent")


def test_feedback_and_concurrent_calls_on_postgresql(postgres: PostgresServer, webhooks: WebhookReceiver) -> None:
    engine = make_engine(postgres.url)
    sessions = init_db(engine)
    with sessions.begin() as s:  # the session-scoped server may hold rows of another test
        for table in (Delivery, EscalationStep, TimelineEntry, Incident, DrillWindow, Contact, Device, Institution):
            s.execute(delete(table))
    import_registry(sessions, directory(webhooks.url))
    alerting = AlertingEngine(sessions, load_routing(), [WebhookChannel()], Metrics(),
                              AlertingOptions(instance_id="pg-a", tick_s=0.05, retry_backoff_s=0.05))
    alerting.start()
    try:
        incident_id = alerting.handle_event(1, Event("sos-front", EventType.PANIC, EventState.ACTIVE,
                                                     datetime.now(UTC), "xm-001"))
        assert incident_id is not None
        wait_for(lambda: {"/police-siming", "/staff", "/contractor"} <= set(webhooks.paths()), what="step 0")
        done, refused = hammer(alerting, incident_id)
        check_hammered(sessions, incident_id, done, refused, 8)
        wait_for(lambda: set(feedback(webhooks, DISPATCHED)) == {"/staff", "/contractor"}, what="dispatch feedback")
        with sessions() as s:
            sent = list(s.scalars(select(EscalationStep).where(EscalationStep.incident_id == incident_id,
                                                               EscalationStep.feedback == "dispatched")))
        wait_for(lambda: _status(sessions, sent[0].id) == StepStatus.SENT, what="feedback step sent")
    finally:
        alerting.stop()
        engine.dispose()


def _status(sessions: Any, step_id: int) -> str:
    with sessions() as s:
        step = s.get(EscalationStep, step_id)
        return step.status if step is not None else ""
