"""The alerting engine: events -> incidents (one per dedup key while open) -> routed escalation steps
-> deliveries. Everything is in the database, so a restart (or another gateway instance) carries on
where this one stopped.

Two threads: one turns committed events into incidents (it never waits for the network); one claims the
escalation steps that are due and hands them to the delivery rounds (alerting.delivery). A step is
claimed in the database before it is sent, so it is sent once even with several gateways; the sender
renews its claim while it sends, and a claim left by a dead sender lapses after ``claim_lease_s`` and is
taken over. Every attempt is committed before the network call, so the taker skips contacts already
reached, sends at once to those never tried, and sends again (same delivery key) to those whose attempt
has an unknown outcome.

A contact not reached is retried (alerting.delivery): life-safety (panic, smoke, gas) every
``life_safety_retry_s`` until reached or acknowledged, the rest with a doubling backoff; later steps keep
their schedule. A refusal that cannot succeed by retrying is permanent: the next step is brought forward
at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from alerting import commissioning
from alerting.channels.base import Channel
from alerting.commissioning import DRILL_ROLE
from alerting.delivery import FEEDBACK_STEP, DeliveryRounds, Plan, RoundResult, Senders, now_utc
from alerting.directory import unroutable_reason
from alerting.health import DeliveryHealth
from alerting.models import (
    AlertingCursor,
    ClosureCode,
    Delivery,
    DrillWindow,
    EscalationStep,
    Incident,
    IncidentState,
    StepStatus,
    TimelineAction,
    TimelineEntry,
)
from alerting.options import AlertingOptions
from alerting.routing import RoutingConfig, decide, expand_roles, severity_of
from alerting.silences import holds_back, matching
from anxin.db import EventRecord, Institution
from anxin.metrics import Metrics
from anxin.model import Event, EventState, EventType

__all__ = ["AlertingEngine", "AlertingOptions", "IncidentNotFound", "TransitionError"]

log = logging.getLogger(__name__)

CLOSURE_CODES = tuple(c.value for c in ClosureCode)  # labels: alerting.models.CLOSURE_LABELS
# allowed transitions: state -> states it may move to
TRANSITIONS: dict[str, set[str]] = {
    IncidentState.TRIGGERED: {IncidentState.ACKNOWLEDGED, IncidentState.DISPATCHED, IncidentState.RESOLVED},
    IncidentState.ACKNOWLEDGED: {IncidentState.DISPATCHED, IncidentState.RESOLVED},
    IncidentState.DISPATCHED: {IncidentState.RESOLVED},
    IncidentState.RESOLVED: {IncidentState.REVIEWED},
    IncidentState.REVIEWED: set(),
}
FEEDBACK_STATES = frozenset({IncidentState.ACKNOWLEDGED, IncidentState.DISPATCHED})  # the institution hears back
MAX_NOTE = 4000
MAX_GUARD = 200  # Incident.dispatched_guard


CURSOR = "events"
LEASE_S = 10.0  # a crashed reader's lease lapses after this; another instance then reads the events
LAPSED = datetime(2000, 1, 1, tzinfo=UTC)  # a claim set to this is taken over at once


class TransitionError(ValueError):
    """The incident cannot move so (or the note cannot be added); the message says why."""


class IncidentNotFound(TransitionError):
    pass


class AlertingEngine:
    def __init__(self, sessions: sessionmaker[Session], routing: RoutingConfig, channels: Sequence[Channel],
                 metrics: Metrics, options: AlertingOptions | None = None) -> None:
        self._sessions = sessions
        self._routing = routing
        self._metrics = metrics
        self.options = options or AlertingOptions()
        self.health = DeliveryHealth(metrics)
        self._sending: set[int] = set()  # steps this instance is sending now (their claims are renewed)
        self._sending_lock = threading.Lock()
        self._event_wake = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.delivery = DeliveryRounds(sessions, channels, metrics, self.health, self.options,
                                       after_round=self._after_round, wake=self._wake.set)
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
        self.delivery.shutdown()

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
            self.delivery.fresh.steps.submit(self._round_logged, plan, self.delivery.fresh).add_done_callback(
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
            roles = expand_roles(step.roles, decision.receivers)
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
        plans = [self.delivery.prepare(s, st, incident, now) for st in steps if st.status == StepStatus.SENDING]
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
                    senders = self.delivery.retries if retry else self.delivery.fresh
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
        futures = []
        for step_id, retry in claimed:
            senders = self.delivery.retries if retry else self.delivery.fresh
            futures.append(senders.steps.submit(self._step_logged, step_id, senders))
        for future in futures:
            future.result()
        return len(futures)

    def _step_logged(self, step_id: int, senders: Senders) -> None:
        with self._sending_lock:
            self._sending.add(step_id)
        try:
            plan = self.delivery.claimed_step(step_id)
            if plan is not None:
                self.delivery.round(plan, senders)
        except Exception:  # the step stays claimed; once the claim lapses another sender takes it over
            log.exception("sending escalation step %s failed", step_id)
        finally:
            with self._sending_lock:
                self._sending.discard(step_id)

    def _round_logged(self, plan: Plan, senders: Senders) -> None:
        with self._sending_lock:
            self._sending.add(plan.step_id)
        try:
            self.delivery.round(plan, senders)
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

    def _after_round(self, s: Session, plan: Plan, result: RoundResult, now: datetime) -> None:
        """In the round's transaction: nobody reached, or a contact that cannot be reached by retrying,
        brings the next receivers forward now; after the last step, a repeat while unacknowledged."""
        if plan.notice_for is not None or plan.feedback is not None:
            return
        nobody = plan.first and not result.reached and (plan.targets or not plan.limited)
        if nobody or result.hopeless:  # held back on purpose is not unreachable
            if nobody:
                s.add(TimelineEntry(incident_id=plan.incident_id, at=now,
                                    action=TimelineAction.DELIVERY_FAILED, detail={"step": plan.step_no}))
                self._metrics.inc("anxin_escalation_unreached_total")
            s.execute(update(EscalationStep)
                      .where(EscalationStep.incident_id == plan.incident_id,
                             EscalationStep.status == StepStatus.PENDING,
                             EscalationStep.notice_for.is_(None), EscalationStep.feedback.is_(None))
                      .values(due_at=now))
        self._schedule_repeat(s, plan.incident_id, plan.step_no, plan.roles, now)

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

    # -- people act on incidents -------------------------------------------------------------------
    # Safe to call from any thread (e.g. an HTTP request's) while the engine runs: each call is one
    # database transaction of its own, with the incident row locked (SELECT ... FOR UPDATE on PostgreSQL;
    # on SQLite this process's write transactions queue on one lock), and it only wakes the sender.
    def transition(self, incident_id: int, to: str, actor: str, channel: str = "api", *,
                   closure_code: str | None = None, note: str = "", guard: str = "") -> Incident:
        """Move the incident to ``to`` (IncidentState); resolving needs a ClosureCode and a note, dispatching
        records the ``guard`` sent. Acknowledging or dispatching stops the escalation and tells the
        institution and the contractor who did (a feedback step). Raises TransitionError (IncidentNotFound)."""
        now = now_utc()
        guard = guard.strip()
        if guard and to != IncidentState.DISPATCHED:
            raise TransitionError("a guard is named only when dispatching")
        if len(guard) > MAX_GUARD:
            raise TransitionError(f"the guard's name is longer than {MAX_GUARD} characters")
        if len(note) > MAX_NOTE:
            raise TransitionError(f"the note is longer than {MAX_NOTE} characters")
        with self._sessions.begin() as s:
            incident = s.get(Incident, incident_id, with_for_update=True)
            if incident is None:
                raise IncidentNotFound(f"no incident {incident_id}")
            if to not in TRANSITIONS[incident.state]:
                raise TransitionError(f"incident {incident_id} is {incident.state}; cannot become {to}")
            first_ack = incident.acknowledged_at is None and to in FEEDBACK_STATES
            if to == IncidentState.RESOLVED:
                if closure_code not in CLOSURE_CODES:
                    raise TransitionError(f"resolving needs a closure code: one of {', '.join(CLOSURE_CODES)}")
                if not note.strip():
                    raise TransitionError("resolving needs a note")
                incident.closure_code = closure_code
                incident.false_alarm = closure_code == ClosureCode.FALSE_ALARM
                incident.open_key = None  # the next event of this key opens a new incident
                incident.resolved_at = now
            elif to == IncidentState.ACKNOWLEDGED:
                incident.acknowledged_at = now
            elif to == IncidentState.DISPATCHED:
                incident.dispatched_at = now
                incident.dispatched_guard = guard or None
                incident.acknowledged_at = incident.acknowledged_at or now
            elif to == IncidentState.REVIEWED:
                incident.reviewed_at = now
            incident.state = to
            detail: dict[str, Any] = {"closure_code": closure_code, "note": note} if closure_code or note else {}
            if guard:
                detail["guard"] = guard
            s.add(TimelineEntry(incident_id=incident_id, at=now, action=to, actor=actor, channel=channel,
                                detail=detail))
            if first_ack:  # a person has seen it: a drill incident may prove its device (commissioning)
                commissioning.on_acknowledged(s, incident, actor, channel, now)
            # Someone has it: stop escalating and retrying (a round being sent finishes); feedback still
            # retrying is superseded by this transition's.
            s.execute(update(EscalationStep)
                      .where(EscalationStep.incident_id == incident_id,
                             EscalationStep.status.in_((StepStatus.PENDING, StepStatus.RETRYING)))
                      .values(status=StepStatus.CANCELLED))
            if to in FEEDBACK_STATES and self._worth_feedback(s, incident):  # sent by the escalation loop
                roles = [DRILL_ROLE] if incident.drill else list(self._routing.feedback_roles)
                s.add(EscalationStep(incident_id=incident_id, step_no=FEEDBACK_STEP, due_at=now, roles=roles,
                                     feedback=to))
            s.flush()
            s.expunge(incident)
        self.health.handled(incident_id)
        self._wake.set()
        return incident

    @staticmethod
    def _worth_feedback(s: Session, incident: Incident) -> bool:
        """Someone waits for news: a life-safety alarm (someone pressed the button, smelled smoke), or an
        incident whose notifications reached someone (not one held back by a silence all along)."""
        if not holds_back(incident):
            return True
        reached = select(Delivery.id).where(Delivery.incident_id == incident.id, Delivery.ok.is_(True))
        return s.scalars(reached.limit(1)).first() is not None

    def acknowledge(self, incident_id: int, actor: str, channel: str = "api") -> Incident:
        return self.transition(incident_id, IncidentState.ACKNOWLEDGED, actor, channel)

    def add_note(self, incident_id: int, actor: str, text: str, channel: str = "api") -> TimelineEntry:
        """A person's note on the incident's timeline, in any state (also after it is resolved); returns
        the row (detached). Raises TransitionError (IncidentNotFound) for no incident or an empty note."""
        text = text.strip()
        if not text:
            raise TransitionError("a note needs some text")
        if len(text) > MAX_NOTE:
            raise TransitionError(f"the note is longer than {MAX_NOTE} characters")
        with self._sessions.begin() as s:
            if s.get(Incident, incident_id) is None:
                raise IncidentNotFound(f"no incident {incident_id}")
            entry = TimelineEntry(incident_id=incident_id, at=now_utc(), action=TimelineAction.NOTE, actor=actor,
                                  channel=channel, detail={"note": text})
            s.add(entry)
            s.flush()
            s.expunge(entry)
        return entry
