"""The alerting engine: events -> incidents (one per dedup key while open) -> routed escalation steps
-> deliveries. Everything is in the database, so a restart (or another gateway instance) carries on
where this one stopped.

Two threads: one turns committed events into incidents (it never waits for the network); one sends the
escalation steps that are due. A step is claimed in the database before it is sent, so it is sent once
even with several gateways; the sender renews its claim while it sends, and a claim left by a dead
sender lapses after ``claim_lease_s`` and is taken over. Every attempt is committed before the network
call, so the taker skips contacts already reached, sends at once to those never tried, and sends again
(same delivery key) to those whose attempt has an unknown outcome.

A contact not reached is retried: life-safety (panic, smoke, gas) every ``life_safety_retry_s`` until
reached or acknowledged, the rest with a doubling backoff; later steps keep their schedule. A refusal
that cannot succeed by retrying is permanent: the next step is brought forward at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from alerting import commissioning
from alerting.ack_links import make_token
from alerting.channels.base import Channel, ChannelError
from alerting.directory import DUTY, NOTICE_ROLES, RESPONDER_ROLES, Recipients, addresses, recipients, unroutable_reason
from alerting.health import DeliveryHealth
from alerting.messages import Notification, build, build_notice, delivery_key
from alerting.models import (
    AlertingCursor,
    Contact,
    Delivery,
    DeliveryStatus,
    DrillWindow,
    EscalationStep,
    Incident,
    Silence,
    StepStatus,
    TimelineAction,
    TimelineEntry,
)
from alerting.routing import RECEIVERS, RoutingConfig, decide, severity_of
from alerting.silences import holds_back, matching
from anxin.db import Device, EventRecord, Institution
from anxin.metrics import Metrics
from anxin.model import Event, EventState, EventType

log = logging.getLogger(__name__)

CLOSURE_CODES = ("real", "false_alarm", "test", "drill", "device_fault")
# allowed transitions: state -> states it may move to
TRANSITIONS = {
    "triggered": {"acknowledged", "dispatched", "resolved"},
    "acknowledged": {"dispatched", "resolved"},
    "dispatched": {"resolved"},
    "resolved": {"reviewed"},
    "reviewed": set(),
}


CURSOR = "events"
LEASE_S = 10.0  # a crashed reader's lease lapses after this; another instance then reads the events
NOTICE_STEP = -1  # step_no of a notice that a contact is unreachable
NOT_FOR_NOTICES = frozenset({"sia_dc09"})  # an alarm receiving centre takes alarm codes, not notices
LAPSED = datetime(2000, 1, 1, tzinfo=UTC)  # a claim set to this is taken over at once
SLOW_FAILURE_S = 1.0  # an attempt that failed after this long (a timeout) is left to the retry rounds


class TransitionError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class AlertingOptions:
    instance_id: str = "anxin-1"
    ack_secret: bytes = b""  # the gateway refuses to start without a real one (anxin.config.check_secrets)
    ack_ttl_s: int = 24 * 3600  # how long an acknowledge link works
    public_url: str = "http://127.0.0.1:8080"
    tick_s: float = 0.2
    delivery_attempts: int = 3  # tries per contact and channel in a step's first round (doubling backoff)
    retry_backoff_s: float = 0.5
    life_safety_retry_s: float = 5.0  # a life-safety contact not reached is tried again this often
    routine_retry_s: float = 30.0  # the rest: this, doubling per round, up to routine_retry_max_s
    routine_retry_max_s: float = 600.0
    routine_max_rounds: int = 8  # then a non-life-safety step gives up on the contacts it did not reach
    claim_lease_s: float = 15.0  # a step claimed by a sender that stopped renewing it is taken over
    voice_severities: tuple[str, ...] = ("critical",)  # phone calls only for these; SMS for all
    contact_rate_per_hour: int = 20  # non-life-safety notifications per contact and hour, at most
    senders: int = 8  # escalation steps sent in parallel (each sends to its contacts in parallel too)


def now_utc() -> datetime:
    return datetime.now(UTC)


class _Senders:
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


class AlertingEngine:
    def __init__(self, sessions: sessionmaker[Session], routing: RoutingConfig, channels: Sequence[Channel],
                 metrics: Metrics, options: AlertingOptions | None = None) -> None:
        self._sessions = sessions
        self._routing = routing
        self._channels = {c.name: c for c in channels}
        self._metrics = metrics
        self.options = options or AlertingOptions()
        self.health = DeliveryHealth(metrics)
        self._sending: set[int] = set()  # steps this instance is sending now (their claims are renewed)
        self._sending_lock = threading.Lock()
        self._event_wake = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        # One contact's slow or failing channel never delays another's message; and retry rounds (to
        # endpoints that fail, perhaps by timing out) have threads of their own, so new alarms never
        # queue behind them.
        self._fresh = _Senders(self.options.senders, "alerting-send")
        self._retries = _Senders(self.options.senders, "alerting-retry")
        self._threads = [
            threading.Thread(target=self._event_loop, name="alerting-events", daemon=True),
            threading.Thread(target=self._escalation_loop, name="alerting-escalation", daemon=True),
        ]

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._init_cursor()
        self._release_own_claims()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._event_wake.set()
        for t in self._threads:
            if t.is_alive():
                t.join(10)
        self._fresh.shutdown()
        self._retries.shutdown()

    def on_events(self, stored: Sequence[tuple[int, Event]]) -> None:
        """EventStore listener (database writer thread): the events are committed, read them now."""
        self._event_wake.set()

    def wait_idle(self, timeout: float) -> bool:
        """Every event committed so far has been read into incidents (by whichever instance)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._sessions() as s:
                newest = s.scalar(select(func.max(EventRecord.id))) or 0
                cursor = s.get(AlertingCursor, CURSOR)
                if cursor is not None and cursor.last_event_id >= newest:
                    return True
            self._event_wake.set()
            time.sleep(0.02)
        return False

    # -- events -> incidents -----------------------------------------------------------------------
    def _init_cursor(self) -> None:
        """A new cursor starts after the events already stored: history is not replayed as alarms."""
        try:
            with self._sessions.begin() as s:
                if s.get(AlertingCursor, CURSOR) is None:
                    newest = s.scalar(select(func.max(EventRecord.id))) or 0
                    s.add(AlertingCursor(name=CURSOR, last_event_id=newest))
        except IntegrityError:
            pass  # another instance created it first

    def _event_loop(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                read = self.consume_events()
                backoff = 0.05
            except OperationalError as exc:  # database unreachable: the events wait in their table
                log.warning("alerting: database unreachable (%s); retrying", exc.__class__.__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception:  # e.g. a lease lost mid-batch: the transaction rolled back, read again
                log.exception("alerting: reading events failed; retrying")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not read:
                self._event_wake.wait(self.options.tick_s)
                self._event_wake.clear()

    def consume_events(self, limit: int = 200) -> int:
        """Turn the next committed events into incidents, under the lease; returns how many were read."""
        now = now_utc()
        me = self.options.instance_id
        with self._sessions() as s:  # a look without writing first: most ticks find nothing new
            cursor = s.get(AlertingCursor, CURSOR)
            if cursor is None:
                return 0
            lease = cursor.lease_until or now
            if cursor.lease_owner not in ("", me) and lease > now:
                return 0
            fresh = cursor.lease_owner == me and lease > now + timedelta(seconds=LEASE_S / 2)
            if fresh and s.scalar(select(EventRecord.id).where(EventRecord.id > cursor.last_event_id).limit(1)) is None:
                return 0
        opened: list[str] = []
        send_now: list[Plan] = []
        with self._sessions.begin() as s:
            # SKIP LOCKED: while one instance reads a batch, the others go on sending due steps
            cursor = s.get(AlertingCursor, CURSOR, with_for_update={"skip_locked": True})
            if cursor is None:
                return 0
            if cursor.lease_owner not in ("", me) and cursor.lease_until is not None and cursor.lease_until > now:
                return 0  # another instance reads the events; this one only sends due steps
            cursor.lease_owner = me
            cursor.lease_until = now + timedelta(seconds=LEASE_S)
            rows = list(s.scalars(select(EventRecord).where(EventRecord.id > cursor.last_event_id)
                                  .order_by(EventRecord.id).limit(limit)))
            for row in rows:
                try:
                    event = Event(row.device_id, EventType(row.type), EventState(row.state), row.ts,
                                  row.institution_id, row.detail)
                except ValueError:  # written by a newer version: never let it block the alarms behind it
                    log.error("alerting: event %s has unknown type/state %s/%s; skipped", row.id, row.type, row.state)
                    continue
                _, new, claimed = self._apply(s, row.id, event)
                send_now += claimed
                if new:
                    opened.append(row.type)
            if rows:
                cursor.last_event_id = rows[-1].id
        for type_ in opened:
            self._metrics.inc("anxin_incidents_opened_total", type=type_)
        self._send_claimed(send_now)
        return len(rows)

    def handle_event(self, event_id: int, e: Event) -> int | None:
        """Open an incident or append to the open one in a transaction of its own; returns the incident
        id (None for a clear without an open incident)."""
        for _ in range(3):  # a concurrent instance may open the same key first: then append to it
            try:
                with self._sessions.begin() as s:
                    incident_id, _, claimed = self._apply(s, event_id, e)
                self._send_claimed(claimed)
                return incident_id
            except IntegrityError:
                continue
        raise RuntimeError(f"could not open or find the incident for event {event_id}")

    def _send_claimed(self, plans: list[Plan]) -> None:
        """Steps claimed (and their attempts recorded) with their incident go to the senders at once, not
        at the escalation loop's next look: the first notification leaves as soon as the incident is
        committed, with no further write before the network call."""
        for plan in plans:
            self._fresh.steps.submit(self._round_logged, plan, self._fresh).add_done_callback(
                lambda _: self._wake.set())

    def _apply(self, s: Session, event_id: int, e: Event) -> tuple[int | None, bool, list[Plan]]:
        """Open an incident (new: True, with the ids of the steps claimed for sending now) or append."""
        key = f"{e.institution_id or '-'}|{e.device_id}|{e.type.value}"
        incident = s.scalars(select(Incident).where(Incident.open_key == key)).one_or_none()
        if incident is not None:
            incident.event_count += 1
            incident.last_event_at = e.ts
            s.add(TimelineEntry(incident_id=incident.id, action=TimelineAction.EVENT, detail={
                "event_id": event_id, "state": e.state.value, "ts": e.ts.isoformat()}))
            return incident.id, False, []
        if e.state is EventState.CLEAR:
            return None, False, []
        incident_id, claimed = self._open(s, key, event_id, e)
        return incident_id, True, claimed

    def _open(self, s: Session, key: str, event_id: int, e: Event) -> tuple[int, list[Plan]]:
        now = now_utc()
        district = ""
        if e.institution_id:
            inst = s.get(Institution, e.institution_id)
            district = inst.district if inst else ""
        drill = e.institution_id is not None and self._in_drill(s, e.institution_id, now)
        severity = severity_of(e.type)
        decision = decide(self._routing, e.type.value, severity, district, e.institution_id or "", now, drill)
        incident = Incident(open_key=key, institution_id=e.institution_id, device_id=e.device_id, type=e.type.value,
                            severity=severity, state="triggered", drill=drill, opened_at=now, last_event_at=e.ts,
                            route=decision.route if decision else "",
                            policy=decision.policy_name if decision else "")
        # No known institution (e.g. an unregistered device): its steps go to the duty contact only.
        fallback = unroutable_reason(s, incident)
        incident.fallback = fallback.value if fallback else ""
        s.add(incident)
        s.flush()
        s.add(TimelineEntry(incident_id=incident.id, at=now, action=TimelineAction.OPENED, detail={
            "event_id": event_id, "event_ts": e.ts.isoformat(), "route": incident.route, "drill": drill,
            "receivers": decision.receivers if decision else [], "fallback": incident.fallback}))
        routine = holds_back(incident)  # not life-safety
        if decision is None:
            s.add(TimelineEntry(incident_id=incident.id, at=now, action=TimelineAction.UNROUTED))
            log.error("incident %s (%s) matches no route: nobody is notified", incident.id, e.type.value)
            if not routine:
                self.health.unroutable(incident.id, "no route")
            return incident.id, []
        silences = matching(s, incident, now)
        if silences:  # recorded now; the notifications themselves are held back when they are due
            action = TimelineAction.SILENCED if routine else TimelineAction.SILENCE_BYPASSED
            s.add(TimelineEntry(incident_id=incident.id, at=now, action=action, detail={
                "silences": [x.id for x in silences], "until": max(x.ends_at for x in silences).isoformat()}))
        steps = []
        for no, step in enumerate(decision.policy.steps):
            roles = _expand(step.roles, decision.receivers)
            # Life-safety never waits for a grouping delay, whatever the policy says.
            after_s = 0 if no == 0 and not routine else step.after_s
            due = now + timedelta(seconds=after_s)
            if after_s == 0:  # claimed by this instance in the incident's own transaction
                steps.append(EscalationStep(incident_id=incident.id, step_no=no, due_at=due, roles=roles,
                                            status=StepStatus.SENDING, claimed_by=self.options.instance_id,
                                            claimed_at=now))
            else:
                steps.append(EscalationStep(incident_id=incident.id, step_no=no, due_at=due, roles=roles,
                                            status=StepStatus.PENDING))
        s.add_all(steps)
        s.flush()
        plans = [self._prepare(s, st, incident, now) for st in steps if st.status == StepStatus.SENDING]
        return incident.id, [p for p in plans if p is not None]

    @staticmethod
    def _in_drill(s: Session, institution_id: str, at: datetime) -> bool:
        q = select(DrillWindow.id).where(DrillWindow.institution_id == institution_id,
                                         DrillWindow.starts_at <= at, DrillWindow.ends_at > at)
        return s.scalars(q.limit(1)).first() is not None

    # -- escalation --------------------------------------------------------------------------------
    def _escalation_loop(self) -> None:
        """Keeps up to ``senders`` steps (and as many retry rounds) in flight, so one slow receiver never
        holds up another alarm, and renews this instance's claims on the steps it is sending."""
        inflight: dict[bool, set[Future[None]]] = {False: set(), True: set()}  # retries? -> futures
        renewed = time.monotonic()
        while not self._stop.is_set():
            claimed = 0
            try:
                if time.monotonic() - renewed >= self.options.claim_lease_s / 3:
                    self._renew_claims()
                    renewed = time.monotonic()
                for kind in inflight:
                    inflight[kind] = {f for f in inflight[kind] if not f.done()}
                free = {kind: self.options.senders - len(futures) for kind, futures in inflight.items()}
                for step_id, retry in self._claim_due(free) if any(n > 0 for n in free.values()) else []:
                    senders = self._retries if retry else self._fresh
                    future = senders.steps.submit(self._step_logged, step_id, senders)
                    future.add_done_callback(lambda _: self._wake.set())
                    inflight[retry].add(future)
                    claimed += 1
            except OperationalError as exc:
                log.warning("escalation: database unreachable (%s); retrying", exc.__class__.__name__)
            except Exception:
                log.exception("escalation loop error")
            if not claimed:
                self._wake.wait(self.options.tick_s)
                self._wake.clear()
        for future in inflight[False] | inflight[True]:
            future.result()

    def run_due_steps(self) -> int:
        """Claim and send (in parallel) the steps that are due now; returns how many were sent."""
        claimed = self._claim_due({False: self.options.senders, True: self.options.senders})
        futures = [(self._retries if retry else self._fresh).steps.submit(
            self._step_logged, step_id, self._retries if retry else self._fresh) for step_id, retry in claimed]
        for future in futures:
            future.result()
        return len(futures)

    def _step_logged(self, step_id: int, senders: _Senders) -> None:
        with self._sending_lock:
            self._sending.add(step_id)
        try:
            plan = self._claimed_step(step_id)
            if plan is not None:
                self._round(plan, senders)
        except Exception:  # the step stays claimed; once the claim lapses another sender takes it over
            log.exception("sending escalation step %s failed", step_id)
        finally:
            with self._sending_lock:
                self._sending.discard(step_id)

    def _round_logged(self, plan: Plan, senders: _Senders) -> None:
        with self._sending_lock:
            self._sending.add(plan.step_id)
        try:
            self._round(plan, senders)
        except Exception:
            log.exception("sending escalation step %s failed", plan.step_id)
        finally:
            with self._sending_lock:
                self._sending.discard(plan.step_id)

    def _renew_claims(self) -> None:
        """Steps this instance is sending keep a fresh claim: only a dead sender's claim lapses."""
        with self._sending_lock:
            ids = list(self._sending)
        if ids:
            with self._sessions.begin() as s:
                s.execute(update(EscalationStep)
                          .where(EscalationStep.id.in_(ids), EscalationStep.status == StepStatus.SENDING,
                                 EscalationStep.claimed_by == self.options.instance_id)
                          .values(claimed_at=now_utc()))

    def _release_own_claims(self) -> None:
        """At start: steps this instance id claimed before it stopped or died are taken over at once."""
        with self._sessions.begin() as s:
            s.execute(update(EscalationStep)
                      .where(EscalationStep.status == StepStatus.SENDING,
                             EscalationStep.claimed_by == self.options.instance_id)
                      .values(claimed_at=LAPSED))

    def _claim_due(self, free: dict[bool, int]) -> list[tuple[int, bool]]:
        """Claim due steps, up to ``free[False]`` new ones (and those a dead sender left) first, then up
        to ``free[True]`` retry rounds; returns (step id, is a retry round)."""
        now = now_utc()
        stale = now - timedelta(seconds=self.options.claim_lease_s)
        claimable = or_(EscalationStep.status.in_((StepStatus.PENDING, StepStatus.RETRYING)),
                        (EscalationStep.status == StepStatus.SENDING) & (EscalationStep.claimed_at < stale))
        left = dict(free)
        with self._sessions.begin() as s:
            q = (select(EscalationStep.id, EscalationStep.incident_id, EscalationStep.step_no,
                        EscalationStep.status, EscalationStep.claimed_by)
                 .where(claimable, EscalationStep.due_at <= now)
                 .order_by(EscalationStep.status == StepStatus.RETRYING, EscalationStep.due_at)
                 .limit(max(0, left[False]) + max(0, left[True])))
            if s.bind is not None and s.bind.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)  # instances take disjoint steps
            rows = s.execute(q).all()
            claimed: list[tuple[int, bool]] = []
            for row in rows:
                retry = row.status == StepStatus.RETRYING
                if left[retry] <= 0:
                    continue
                res = s.execute(update(EscalationStep).where(EscalationStep.id == row.id, claimable)
                                .values(status=StepStatus.SENDING, claimed_by=self.options.instance_id,
                                        claimed_at=now))
                if res.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                left[retry] -= 1
                claimed.append((row.id, retry))
                if row.status == StepStatus.SENDING:  # its sender died mid-step
                    log.warning("escalation step %s of incident %s: taking over from %s, whose claim lapsed",
                                row.id, row.incident_id, row.claimed_by)
                    s.add(TimelineEntry(incident_id=row.incident_id, at=now, action=TimelineAction.TAKEN_OVER,
                                        detail={"step": row.step_no, "from": row.claimed_by,
                                                "by": self.options.instance_id}))
        return claimed

    def _claimed_step(self, step_id: int) -> Plan | None:
        """In one write transaction: read the claimed step, plan its round and record the round's first
        attempts (None: nothing to send now — acknowledged meanwhile, or held back by a silence)."""
        now = now_utc()
        with self._sessions.begin() as s:
            step = s.get(EscalationStep, step_id)
            assert step is not None
            incident = s.get(Incident, step.incident_id)
            assert incident is not None
            if incident.state != "triggered":  # acknowledged meanwhile: nothing more to send
                step.status = StepStatus.CANCELLED
                return None
            return self._prepare(s, step, incident, now)

    def _prepare(self, s: Session, step: EscalationStep, incident: Incident, now: datetime) -> Plan | None:
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

    def _round(self, plan: Plan, senders: _Senders) -> None:
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
        self._wake.set()

    def _plan(self, s: Session, step: EscalationStep, incident: Incident, now: datetime) -> Plan:
        life_safety = not holds_back(incident)  # never silenced nor rate-limited
        notice_for = step.notice_for
        first = step.rounds == 0
        held = matching(s, incident, now) if not life_safety else []
        rec = recipients(s, incident, list(step.roles), with_fallback=notice_for is None)
        contacts = [c for c in rec.contacts if c.id != notice_for]
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
        label = str(step.step_no) if notice_for is None else f"notice-{notice_for}"
        failing = self._failing_detail(s, incident.id, notice_for) if notice_for else None
        fallback_of = {c.id for c in contacts if c.role == DUTY and rec.fallback is not None}
        phone_channels = ("sms", "voice") if incident.severity in self.options.voice_severities else ("sms",)
        targets: list[Target] = []
        channels_of: dict[str, list[str]] = {}
        for c in contacts:
            key = delivery_key(incident.id, label, c.id)
            if failing is not None:
                note = build_notice(incident.id, incident.type, institution, room, *failing,
                                    self.ack_url(incident.id, c.id), key)
            else:
                note = build(incident.id, incident.type, incident.drill, institution, incident.device_id, room,
                             incident.opened_at, step.step_no, self.ack_url(incident.id, c.id), key,
                             rec.fallback.value if rec.fallback and c.id in fallback_of else "")
            for ch, addr, secret in addresses(c, phone_channels):
                if ch not in self._channels or (failing is not None and ch in NOT_FOR_NOTICES):
                    continue
                channels_of.setdefault(c.id, []).append(ch)
                if (c.id, ch) not in settled:
                    targets.append(Target(c.id, c.role, ch, addr, secret, key, note, tries[(c.id, ch)]))
        return Plan(step_id=step.id, incident_id=incident.id, step_no=step.step_no, roles=list(step.roles), first=first,
                    life_safety=life_safety, notice_for=notice_for, rounds=step.rounds, held=held,
                    recipients=rec, limited=limited, targets=targets, settled=settled, channels_of=channels_of,
                    unknown=[d.id for d in previous if d.status == DeliveryStatus.SENDING])

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
        give_up = outstanding and not plan.life_safety and rounds >= self.options.routine_max_rounds
        step_id = plan.step_id
        mine = update(EscalationStep).where(EscalationStep.id == step_id, EscalationStep.status == StepStatus.SENDING,
                                            EscalationStep.claimed_by == self.options.instance_id)
        with self._sessions.begin() as s:
            if outstanding and not give_up:
                res = s.execute(mine.values(
                    status=StepStatus.RETRYING, rounds=rounds, claimed_by="", claimed_at=None,
                    due_at=now + timedelta(seconds=self._retry_delay(plan.life_safety, plan.rounds))))
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
                if not plan.first:
                    detail["round"] = plan.rounds + 1
                if unreached:
                    detail["unreached"] = sorted(unreached)
                s.add(TimelineEntry(incident_id=plan.incident_id, at=now, action=TimelineAction.NOTIFIED,
                                    channel="notice" if plan.notice_for else "escalation", detail=detail))
            if give_up:
                log.warning("incident %s step %s: giving up on %s after %s rounds (not life-safety)",
                            plan.incident_id, plan.step_no, sorted(unreached), rounds)
            if plan.notice_for is None:
                nobody = plan.first and not reached and (plan.targets or not plan.limited)
                if nobody or hopeless:  # held back on purpose is not unreachable
                    # Nobody reached, or a contact that cannot be reached by retrying: the next receivers now.
                    if nobody:
                        s.add(TimelineEntry(incident_id=plan.incident_id, at=now,
                                            action=TimelineAction.DELIVERY_FAILED, detail={"step": plan.step_no}))
                        self._metrics.inc("anxin_escalation_unreached_total")
                    s.execute(update(EscalationStep)
                              .where(EscalationStep.incident_id == plan.incident_id,
                                     EscalationStep.status == StepStatus.PENDING,
                                     EscalationStep.notice_for.is_(None))
                              .values(due_at=now))
                self._schedule_repeat(s, plan.incident_id, plan.step_no, plan.roles, now)
        if plan.life_safety and plan.notice_for is None:
            roles = {t.contact_id: t.role for t in outcomes}
            for contact_id in sorted(c for c in unreached if roles[c] in RESPONDER_ROLES):
                self._open_notice(plan.incident_id, plan.step_no, contact_id, now)

    def _retry_delay(self, life_safety: bool, rounds_done: int) -> float:
        if life_safety:
            return self.options.life_safety_retry_s
        return float(min(self.options.routine_retry_s * 2 ** rounds_done, self.options.routine_retry_max_s))

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
        self._wake.set()

    def _schedule_repeat(self, s: Session, incident_id: int, step_no: int, roles: list[str], now: datetime) -> None:
        later = s.scalars(select(EscalationStep.id).where(EscalationStep.incident_id == incident_id,
                                                          EscalationStep.step_no > step_no)).first()
        incident = s.get(Incident, incident_id)
        if later is not None or incident is None or incident.state != "triggered":
            return
        policy = self._routing.policies.get(incident.policy)
        if policy is None or policy.repeat_every_s is None:
            return
        if step_no + 1 - len(policy.steps) >= policy.max_repeats:
            return
        s.add(EscalationStep(incident_id=incident_id, step_no=step_no + 1,
                             due_at=now + timedelta(seconds=policy.repeat_every_s), roles=roles))

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

    @staticmethod
    def _sent_last_hour(s: Session, contact_id: str, now: datetime) -> int:
        """Non-life-safety notifications that reached this contact in the last hour (one per step)."""
        q = (select(func.count(func.distinct(Delivery.step_id)))
             .join(Incident, Incident.id == Delivery.incident_id)
             .where(Delivery.contact_id == contact_id, Delivery.ok.is_(True),
                    Delivery.at > now - timedelta(hours=1), Incident.severity != "critical"))
        return int(s.scalar(q) or 0)

    def ack_url(self, incident_id: int, contact_id: str) -> str:
        token = make_token(self.options.ack_secret, incident_id, contact_id, ttl_s=self.options.ack_ttl_s)
        return f"{self.options.public_url}/ack/{token}"

    # -- people act on incidents -------------------------------------------------------------------
    def transition(self, incident_id: int, to: str, actor: str, channel: str = "api", *,
                   closure_code: str | None = None, note: str = "") -> Incident:
        now = now_utc()
        with self._sessions.begin() as s:
            incident = s.get(Incident, incident_id, with_for_update=True)
            if incident is None:
                raise TransitionError(f"no incident {incident_id}")
            if to not in TRANSITIONS[incident.state]:
                raise TransitionError(f"incident {incident_id} is {incident.state}; cannot become {to}")
            first_ack = incident.acknowledged_at is None and to in ("acknowledged", "dispatched")
            if to == "resolved":
                if closure_code not in CLOSURE_CODES:
                    raise TransitionError(f"resolving needs a closure code: one of {', '.join(CLOSURE_CODES)}")
                if not note.strip():
                    raise TransitionError("resolving needs a note")
                incident.closure_code = closure_code
                incident.false_alarm = closure_code == "false_alarm"
                incident.open_key = None  # the next event of this key opens a new incident
                incident.resolved_at = now
            elif to == "acknowledged":
                incident.acknowledged_at = now
            elif to == "dispatched":
                incident.dispatched_at = now
                incident.acknowledged_at = incident.acknowledged_at or now
            elif to == "reviewed":
                incident.reviewed_at = now
            incident.state = to
            s.add(TimelineEntry(incident_id=incident_id, at=now, action=to, actor=actor, channel=channel,
                                detail={"closure_code": closure_code, "note": note} if closure_code or note else {}))
            if first_ack:  # a person has seen it: a drill incident may prove its device (commissioning)
                commissioning.on_acknowledged(s, incident, actor, channel, now)
            # Someone has it: stop escalating and retrying (a round being sent finishes).
            s.execute(update(EscalationStep)
                      .where(EscalationStep.incident_id == incident_id,
                             EscalationStep.status.in_((StepStatus.PENDING, StepStatus.RETRYING)))
                      .values(status=StepStatus.CANCELLED))
            s.flush()
            s.expunge(incident)
        self.health.handled(incident_id)
        return incident

    def acknowledge(self, incident_id: int, actor: str, channel: str = "api") -> Incident:
        return self.transition(incident_id, "acknowledged", actor, channel)


def _expand(roles: list[str], receivers: list[str]) -> list[str]:
    out: list[str] = []
    for role in roles:
        out.extend(receivers if role == RECEIVERS else [role])
    return list(dict.fromkeys(out))

