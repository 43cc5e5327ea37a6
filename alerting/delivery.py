"""Delivery rounds: who a claimed escalation step reaches and how (its plan), the attempts recorded as
``Delivery`` rows before and after each network call, retry rounds for the contacts not reached yet, and
the notices that a responder's channel is failing.

A round is planned and its first attempts are recorded ("sending") in one transaction before any
network call; each contact is then reached on its own thread, so one slow or failing channel never delays
another's message. Feedback steps (someone acknowledged or dispatched the incident) are delivered the
same way, to the institution and the contractor. The escalation engine (alerting.engine) decides which
steps are due and what happens after a round (the next step brought forward, repeats): it is called
back in the round's own transaction through ``after_round``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from alerting.ack_links import make_token
from alerting.channels.base import Channel, ChannelError
from alerting.directory import DUTY, NOTICE_ROLES, RESPONDER_ROLES, Recipients, addresses, recipients
from alerting.health import DeliveryHealth
from alerting.messages import Notification, build, build_feedback, build_notice, delivery_key
from alerting.models import (
    Contact,
    Delivery,
    DeliveryStatus,
    EscalationStep,
    Incident,
    Silence,
    StepStatus,
    TimelineAction,
    TimelineEntry,
)
from alerting.options import AlertingOptions
from alerting.silences import holds_back, matching
from anxin.db import Device, Institution
from anxin.metrics import Metrics

log = logging.getLogger(__name__)

NOTICE_STEP = -1  # step_no of a notice that a contact is unreachable
FEEDBACK_STEP = -2  # step_no of feedback that someone acknowledged or dispatched the incident
CONTACT_ACTOR = "contact:"  # an actor who acted through a contact's acknowledge link: "contact:<id>"
NOT_FOR_NOTICES = frozenset({"sia_dc09"})  # an alarm receiving centre takes alarm codes, not notices
SLOW_FAILURE_S = 1.0  # an attempt that failed after this long (a timeout) is left to the retry rounds


def now_utc() -> datetime:
    return datetime.now(UTC)


class Senders:
    """Threads that send steps, and beside them the threads that reach a step's other contacts."""

    def __init__(self, n: int, name: str) -> None:
        self.steps = ThreadPoolExecutor(max_workers=n, thread_name_prefix=name)
        self.fanout = ThreadPoolExecutor(max_workers=4 * n, thread_name_prefix=f"{name}-contact")

    def shutdown(self) -> None:
        self.steps.shutdown(wait=True)
        self.fanout.shutdown(wait=True)


@dataclass(slots=True, eq=False)
class Target:
    """One way to reach one contact in a step (compared by identity)."""

    contact_id: str
    role: str
    channel: str
    address: str
    secret: str
    key: str
    note: Notification
    tries: int  # attempts recorded before this round (attempt numbers continue)
    row_id: int | None = None  # the round's first attempt, recorded with the claim


@dataclass(slots=True)
class Plan:
    """What one round of a step sends, read in one session before any network call."""

    step_id: int
    incident_id: int
    step_no: int
    roles: list[str]
    first: bool
    life_safety: bool
    notice_for: str | None
    rounds: int
    held: list[Silence]
    recipients: Recipients
    limited: list[str]
    targets: list[Target]
    settled: dict[tuple[str, str], str]  # (contact, channel) -> delivered | permanent, from earlier rounds
    channels_of: dict[str, list[str]] = field(default_factory=dict)
    unknown: list[int] = field(default_factory=list)  # delivery rows a dead sender left "sending"
    feedback: str | None = None  # a feedback step: the state the incident reached


@dataclass(frozen=True, slots=True)
class Feedback:
    """What a feedback message says: who moved the incident to ``state``, when, and the guard sent."""

    state: str
    actor: str  # as people know them: a contact's name, or the operator's
    actor_contact: str | None  # the contact whose acknowledge link was used (it needs no feedback)
    at: datetime
    guard: str


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What a round achieved, counting the step's earlier rounds."""

    reached: set[str]  # contacts reached on some channel
    unreached: set[str]  # contacts attempted in this round and not reached
    hopeless: set[str]  # ... of which every channel refused for good


# Called in the round's transaction once the step's status is recorded (the escalation's next move).
AfterRound = Callable[[Session, Plan, RoundResult, datetime], None]


class DeliveryRounds:
    def __init__(self, sessions: sessionmaker[Session], channels: Sequence[Channel], metrics: Metrics,
                 health: DeliveryHealth, options: AlertingOptions, after_round: AfterRound,
                 wake: Callable[[], None]) -> None:
        self._sessions = sessions
        self._channels = {c.name: c for c in channels}
        self._metrics = metrics
        self.health = health
        self.options = options
        self._after_round = after_round
        self._wake = wake
        # Retry rounds (to endpoints that fail, perhaps by timing out) have threads of their own, so new
        # alarms never queue behind them.
        self.fresh = Senders(options.senders, "alerting-send")
        self.retries = Senders(options.senders, "alerting-retry")

    def shutdown(self) -> None:
        self.fresh.shutdown()
        self.retries.shutdown()

    def ack_url(self, incident_id: int, contact_id: str) -> str:
        token = make_token(self.options.ack_secret, incident_id, contact_id, ttl_s=self.options.ack_ttl_s)
        return f"{self.options.public_url}/ack/{token}"

    # -- planning ----------------------------------------------------------------------------------
    def claimed_step(self, step_id: int) -> Plan | None:
        """In one write transaction: read the claimed step, plan its round and record the round's first
        attempts (None: nothing to send now — acknowledged meanwhile, or held back by a silence)."""
        now = now_utc()
        with self._sessions.begin() as s:
            step = s.get(EscalationStep, step_id)
            assert step is not None
            incident = s.get(Incident, step.incident_id)
            assert incident is not None
            if incident.state != "triggered" and step.feedback is None:  # acknowledged meanwhile: nothing more
                step.status = StepStatus.CANCELLED
                return None
            return self.prepare(s, step, incident, now)

    def prepare(self, s: Session, step: EscalationStep, incident: Incident, now: datetime) -> Plan | None:
        """Plan a round of a step this instance has claimed and record, in the caller's transaction, its
        first attempts ("sending") before any network call."""
        plan = self._plan(s, step, incident, now)
        if plan.held:  # silence / maintenance: the step waits for its end, then goes out if still unacknowledged
            until = max(x.ends_at for x in plan.held)
            step.status, step.due_at, step.claimed_by, step.claimed_at = StepStatus.PENDING, until, "", None
            s.add(TimelineEntry(incident_id=plan.incident_id, at=now, action=TimelineAction.POSTPONED, detail={
                "step": plan.step_no, "until": until.isoformat(), "silences": [x.id for x in plan.held]}))
            return None
        if plan.unknown:  # attempts of a sender that died mid-call: their outcome is unknown
            s.execute(update(Delivery).where(Delivery.id.in_(plan.unknown))
                      .values(status=DeliveryStatus.UNKNOWN, detail="sender died during the attempt"))
        if plan.first and plan.recipients.fallback is not None:
            self._record_fallback(s, incident, plan, now)
        rows = [Delivery(incident_id=plan.incident_id, step_id=plan.step_id, contact_id=t.contact_id, channel=t.channel,
                         address=t.address, attempt=t.tries + 1, ok=False, status=DeliveryStatus.SENDING, key=t.key,
                         at=now) for t in plan.targets]
        s.add_all(rows)
        s.flush()
        for target, row in zip(plan.targets, rows, strict=True):
            target.row_id = row.id
        return plan

    def _plan(self, s: Session, step: EscalationStep, incident: Incident, now: datetime) -> Plan:
        life_safety = not holds_back(incident)  # never silenced nor rate-limited
        notice_for = step.notice_for
        feedback = self._feedback(s, incident.id, step.feedback) if step.feedback else None
        first = step.rounds == 0
        held = matching(s, incident, now) if not life_safety else []
        rec = recipients(s, incident, list(step.roles), with_fallback=notice_for is None and feedback is None)
        skip = notice_for or (feedback.actor_contact if feedback else None)  # the contact it is about / who acted
        contacts = [c for c in rec.contacts if c.id != skip]
        limited: list[str] = []
        if not life_safety and first:
            limited = [c.id for c in contacts if self._sent_last_hour(s, c.id, now)
                       >= self.options.contact_rate_per_hour]
            contacts = [c for c in contacts if c.id not in limited]
        previous = list(s.scalars(select(Delivery).where(Delivery.step_id == step.id)))
        settled = {(d.contact_id, d.channel): d.status for d in previous
                   if d.status in (DeliveryStatus.DELIVERED, DeliveryStatus.PERMANENT)}
        tries = Counter((d.contact_id, d.channel) for d in previous)
        inst = s.get(Institution, incident.institution_id) if incident.institution_id else None
        device = s.get(Device, incident.device_id)
        institution = inst.name if inst else "未登记机构"
        room = (device.name or device.room) if device else ""
        label = f"notice-{notice_for}" if notice_for else step.feedback or str(step.step_no)
        failing = self._failing_detail(s, incident.id, notice_for) if notice_for else None
        fallback_of = {c.id for c in contacts if c.role == DUTY and rec.fallback is not None}
        phone_channels = ("sms", "voice") if incident.severity in self.options.voice_severities else ("sms",)
        if feedback is not None:
            phone_channels = ("sms",)  # feedback is no reason to ring anyone
        not_for_alarm = failing is not None or feedback is not None  # an alarm receiving centre takes alarms only
        targets: list[Target] = []
        channels_of: dict[str, list[str]] = {}
        for c in contacts:
            key = delivery_key(incident.id, label, c.id)
            if feedback is not None:
                note = build_feedback(incident.id, incident.type, incident.drill, institution, room, feedback.state,
                                      feedback.actor, feedback.at, feedback.guard, key)
            elif failing is not None:
                note = build_notice(incident.id, incident.type, institution, room, *failing,
                                    self.ack_url(incident.id, c.id), key)
            else:
                note = build(incident.id, incident.type, incident.drill, institution, incident.device_id, room,
                             incident.opened_at, step.step_no, self.ack_url(incident.id, c.id), key,
                             rec.fallback.value if rec.fallback and c.id in fallback_of else "")
            for ch, addr, secret in addresses(c, phone_channels):
                if ch not in self._channels or (not_for_alarm and ch in NOT_FOR_NOTICES):
                    continue
                channels_of.setdefault(c.id, []).append(ch)
                if (c.id, ch) not in settled:
                    targets.append(Target(c.id, c.role, ch, addr, secret, key, note, tries[(c.id, ch)]))
        return Plan(step_id=step.id, incident_id=incident.id, step_no=step.step_no, roles=list(step.roles), first=first,
                    life_safety=life_safety, notice_for=notice_for, rounds=step.rounds, held=held,
                    recipients=rec, limited=limited, targets=targets, settled=settled, channels_of=channels_of,
                    unknown=[d.id for d in previous if d.status == DeliveryStatus.SENDING],
                    feedback=step.feedback)

    @staticmethod
    def _feedback(s: Session, incident_id: int, state: str) -> Feedback:
        """Who moved the incident to ``state`` and when, from the transition's timeline row."""
        row = s.scalars(select(TimelineEntry).where(TimelineEntry.incident_id == incident_id,
                                                    TimelineEntry.action == state)
                        .order_by(TimelineEntry.id.desc())).first()
        if row is None:  # cannot happen: the transition adds the row with the step
            return Feedback(state, "-", None, now_utc(), "")
        contact_id = row.actor.removeprefix(CONTACT_ACTOR) if row.actor.startswith(CONTACT_ACTOR) else None
        contact = s.get(Contact, contact_id) if contact_id else None
        actor = (contact.name or contact.id) if contact else row.actor
        return Feedback(state, actor, contact_id, row.at, str((row.detail or {}).get("guard") or ""))

    @staticmethod
    def _failing_detail(s: Session, incident_id: int, contact_id: str) -> tuple[str, str, str, str]:
        """(name, role, channel, error) of the contact a notice is about, from its last failed attempt."""
        contact = s.get(Contact, contact_id)
        last = s.scalars(select(Delivery).where(
            Delivery.incident_id == incident_id, Delivery.contact_id == contact_id,
            Delivery.status.in_((DeliveryStatus.FAILED, DeliveryStatus.PERMANENT)),
        ).order_by(Delivery.id.desc())).first()
        name = f"{contact.name or contact.id}" if contact else contact_id
        return name, contact.role if contact else "", last.channel if last else "", last.detail[:200] if last else ""

    @staticmethod
    def _sent_last_hour(s: Session, contact_id: str, now: datetime) -> int:
        """Non-life-safety notifications that reached this contact in the last hour (one per step)."""
        q = (select(func.count(func.distinct(Delivery.step_id)))
             .join(Incident, Incident.id == Delivery.incident_id)
             .where(Delivery.contact_id == contact_id, Delivery.ok.is_(True),
                    Delivery.at > now - timedelta(hours=1), Incident.severity != "critical"))
        return int(s.scalar(q) or 0)

    @staticmethod
    def _record_fallback(s: Session, incident: Incident, plan: Plan, now: datetime) -> None:
        rec = plan.recipients
        assert rec.fallback is not None
        duty = [c.id for c in rec.contacts if c.role == DUTY]
        if not incident.fallback:
            incident.fallback = rec.fallback.value
        s.add(TimelineEntry(incident_id=plan.incident_id, at=now,
                            action=TimelineAction.UNROUTABLE if rec.unroutable else TimelineAction.FALLBACK,
                            detail={"step": plan.step_no, "reason": rec.fallback.value, "roles": rec.fallback_roles,
                                    "duty": duty}))

    def _tell_fallback(self, plan: Plan) -> None:
        rec = plan.recipients
        assert rec.fallback is not None
        if rec.unroutable:
            log.error("无法派送 unroutable: incident %s step %s (%s, roles %s) and no duty contact to fall back to: "
                      "add a contact with role duty to the registry", plan.incident_id, plan.step_no,
                      rec.fallback.value, rec.fallback_roles)
            self.health.unroutable(plan.incident_id, f"{rec.fallback.value}: {', '.join(rec.fallback_roles)}")
        else:
            log.warning("incident %s step %s goes to the duty contact %s (%s, roles %s)", plan.incident_id,
                        plan.step_no, [c.id for c in rec.contacts if c.role == DUTY], rec.fallback.value,
                        rec.fallback_roles)

    # -- sending -----------------------------------------------------------------------------------
    def round(self, plan: Plan, senders: Senders) -> None:
        """One round: send to the step's contacts not reached yet; then the step is sent, or retried for
        the contacts still unreached (life-safety: every ``life_safety_retry_s`` until acknowledged)."""
        if plan.first and plan.recipients.fallback is not None:
            self._tell_fallback(plan)
        attempts = self.options.delivery_attempts if plan.first else 1  # retries are the later rounds

        def deliver(t: Target) -> tuple[Target, DeliveryStatus]:
            return t, self._deliver(plan.incident_id, plan.step_id, t, attempts)

        # The first target on this thread (no hand-over for the common single receiver), the rest beside it.
        others = [senders.fanout.submit(deliver, t) for t in plan.targets[1:]]
        outcomes = dict([deliver(plan.targets[0])] if plan.targets else [])
        outcomes.update(f.result() for f in others)
        self._finish_round(plan, outcomes)
        self._wake()

    def _deliver(self, incident_id: int, step_id: int, t: Target, attempts: int) -> DeliveryStatus:
        """Up to ``attempts`` tries (with backoff); each is committed as "sending" before the network
        call and updated with its outcome, so a sender that dies leaves a trace of what it began. A slow
        failure (a timeout) is not tried again at once: the retry rounds take it, on their own threads."""
        channel = self._channels[t.channel]
        backoff = self.options.retry_backoff_s
        status = DeliveryStatus.FAILED
        for n in range(attempts):
            row_id = t.row_id if n == 0 else None
            if row_id is None:
                with self._sessions.begin() as s:
                    row = Delivery(incident_id=incident_id, step_id=step_id, contact_id=t.contact_id,
                                   channel=t.channel, address=t.address, attempt=t.tries + n + 1, ok=False,
                                   status=DeliveryStatus.SENDING, key=t.key, at=now_utc())
                    s.add(row)
                    s.flush()
                    row_id = row.id
            started = time.monotonic()
            try:
                detail = channel.send(t.address, t.secret, t.note)
                status = DeliveryStatus.DELIVERED
            except ChannelError as exc:
                status = DeliveryStatus.PERMANENT if exc.permanent else DeliveryStatus.FAILED
                detail = str(exc)
            except Exception as exc:  # a channel's bug: recorded as a failed attempt, never a stuck step
                log.exception("channel %s raised", t.channel)
                status, detail = DeliveryStatus.FAILED, f"{exc.__class__.__name__}: {exc}"
            answered = now_utc()
            with self._sessions.begin() as s:
                s.execute(update(Delivery).where(Delivery.id == row_id).values(
                    status=status, ok=status is DeliveryStatus.DELIVERED, detail=detail[:1000], answered_at=answered))
            self._metrics.inc("anxin_deliveries_total", channel=t.channel,
                              ok=str(status is DeliveryStatus.DELIVERED).lower())
            if status is DeliveryStatus.DELIVERED:
                self.health.delivered(t.contact_id, t.channel, answered)
                return status
            self.health.failed(t.contact_id, t.channel, incident_id, detail[:200],
                               status is DeliveryStatus.PERMANENT, answered)
            if status is DeliveryStatus.PERMANENT or time.monotonic() - started > SLOW_FAILURE_S:
                return status
            if n + 1 < attempts:
                time.sleep(backoff)
                backoff *= 2
        return status

    def _finish_round(self, plan: Plan, outcomes: dict[Target, DeliveryStatus]) -> None:
        now = now_utc()
        status_of = {**plan.settled, **{(t.contact_id, t.channel): o for t, o in outcomes.items()}}
        delivered_now = sum(o is DeliveryStatus.DELIVERED for o in outcomes.values())
        reached = {c for (c, _), o in status_of.items() if o is DeliveryStatus.DELIVERED}
        attempted = {t.contact_id for t in outcomes}
        # unreached after this round; permanently: every way to the contact refused for good
        unreached = attempted - reached
        hopeless = {c for c in unreached
                    if all(status_of.get((c, ch)) is DeliveryStatus.PERMANENT for ch in plan.channels_of[c])}
        outstanding = any(o is DeliveryStatus.FAILED for o in outcomes.values())
        rounds = plan.rounds + 1
        persist = plan.life_safety and plan.feedback is None  # life-safety alarms are retried until acknowledged
        give_up = outstanding and not persist and rounds >= self.options.routine_max_rounds
        step_id = plan.step_id
        mine = update(EscalationStep).where(EscalationStep.id == step_id, EscalationStep.status == StepStatus.SENDING,
                                            EscalationStep.claimed_by == self.options.instance_id)
        with self._sessions.begin() as s:
            if outstanding and not give_up:
                res = s.execute(mine.values(
                    status=StepStatus.RETRYING, rounds=rounds, claimed_by="", claimed_at=None,
                    due_at=now + timedelta(seconds=self._retry_delay(plan))))
            else:
                res = s.execute(mine.values(status=StepStatus.SENT, sent_at=now, rounds=rounds))
            if res.rowcount != 1:  # type: ignore[attr-defined]
                # Our claim lapsed (e.g. the database was unreachable) and another sender took the step
                # over: it records the round; what this one delivered is in the deliveries table.
                log.warning("escalation step %s was taken over while this instance sent it", step_id)
                return
            if plan.first and plan.limited:
                s.add(TimelineEntry(incident_id=plan.incident_id, at=now, action=TimelineAction.RATE_LIMITED, detail={
                    "step": plan.step_no, "contacts": plan.limited, "per_hour": self.options.contact_rate_per_hour}))
            if plan.first or delivered_now:
                detail: dict[str, Any] = {"step": plan.step_no, "roles": plan.roles, "targets": len(outcomes),
                                          "delivered": delivered_now}
                if plan.notice_for:
                    detail["notice_for"] = plan.notice_for
                if plan.feedback:
                    detail["feedback"] = plan.feedback
                if not plan.first:
                    detail["round"] = plan.rounds + 1
                if unreached:
                    detail["unreached"] = sorted(unreached)
                s.add(TimelineEntry(incident_id=plan.incident_id, at=now, action=TimelineAction.NOTIFIED,
                                    channel=_kind(plan), detail=detail))
            if give_up:
                log.warning("incident %s step %s: giving up on %s after %s rounds (not life-safety)",
                            plan.incident_id, plan.step_no, sorted(unreached), rounds)
            self._after_round(s, plan, RoundResult(reached, unreached, hopeless), now)
        if plan.life_safety and plan.notice_for is None and plan.feedback is None:
            roles = {t.contact_id: t.role for t in outcomes}
            for contact_id in sorted(c for c in unreached if roles[c] in RESPONDER_ROLES):
                self._open_notice(plan.incident_id, plan.step_no, contact_id, now)

    def _retry_delay(self, plan: Plan) -> float:
        """Life-safety alarms: every ``life_safety_retry_s``. The rest, and feedback (a life-safety
        incident's from ``life_safety_retry_s``), doubling per round up to ``routine_retry_max_s``."""
        if plan.life_safety and plan.feedback is None:
            return self.options.life_safety_retry_s
        start = self.options.life_safety_retry_s if plan.life_safety else self.options.routine_retry_s
        return float(min(start * 2 ** plan.rounds, self.options.routine_retry_max_s))

    def _open_notice(self, incident_id: int, step_no: int, contact_id: str, now: datetime) -> None:
        """Tell the contractor and the duty contact that ``contact_id`` cannot be reached: once per
        incident and contact (a unique key, so concurrent steps and instances add it once)."""
        with self._sessions() as s:
            incident = s.get(Incident, incident_id)
            if incident is None or incident.state != "triggered":
                return  # someone has it already
            if s.scalar(select(EscalationStep.id).where(EscalationStep.incident_id == incident_id,
                                                        EscalationStep.notice_for == contact_id)) is not None:
                return
        try:
            with self._sessions.begin() as s:
                s.add(EscalationStep(incident_id=incident_id, step_no=NOTICE_STEP, due_at=now, roles=NOTICE_ROLES,
                                     notice_for=contact_id))
                s.flush()
                s.add(TimelineEntry(incident_id=incident_id, at=now, action=TimelineAction.CHANNEL_FAILING,
                                    detail={"step": step_no, "contact": contact_id, "notify": NOTICE_ROLES}))
        except IntegrityError:
            return  # added meanwhile by another step or instance
        log.warning("incident %s: contact %s unreachable; telling %s", incident_id, contact_id, NOTICE_ROLES)
        self._wake()


def _kind(plan: Plan) -> str:
    """The timeline channel of a NOTIFIED row: what the step told people."""
    return "notice" if plan.notice_for else "feedback" if plan.feedback else "escalation"
