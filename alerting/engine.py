"""The alerting engine: events -> incidents (one per dedup key while open) -> routed escalation steps
-> deliveries. Everything is in the database, so a restart (or another gateway instance) carries on
where this one stopped.

Two threads: one turns committed events into incidents (it never waits for the network); one sends the
escalation steps that are due. A step is claimed in the database before it is sent, so it is sent once
even with several gateways; a claim left by a crashed instance is taken over after ``stale_claim_s``
(a notification may then repeat, but is never lost).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from alerting.ack_links import make_token
from alerting.channels import Channel, ChannelError
from alerting.messages import build
from alerting.models import (
    AlertingCursor,
    Contact,
    Delivery,
    DrillWindow,
    EscalationStep,
    Incident,
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


class TransitionError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class AlertingOptions:
    instance_id: str = "anxin-1"
    ack_secret: bytes = b""  # the gateway refuses to start without a real one (anxin.config.check_secrets)
    ack_ttl_s: int = 24 * 3600  # how long an acknowledge link works
    public_url: str = "http://127.0.0.1:8080"
    tick_s: float = 0.2
    delivery_attempts: int = 3
    retry_backoff_s: float = 0.5
    stale_claim_s: float = 60.0
    voice_severities: tuple[str, ...] = ("critical",)  # phone calls only for these; SMS for all
    contact_rate_per_hour: int = 20  # non-life-safety notifications per contact and hour, at most
    senders: int = 8  # escalation steps sent in parallel (each sends to its contacts in parallel too)


def now_utc() -> datetime:
    return datetime.now(UTC)


class AlertingEngine:
    def __init__(self, sessions: sessionmaker[Session], routing: RoutingConfig, channels: Sequence[Channel],
                 metrics: Metrics, options: AlertingOptions | None = None) -> None:
        self._sessions = sessions
        self._routing = routing
        self._channels = {c.name: c for c in channels}
        self._metrics = metrics
        self.options = options or AlertingOptions()
        self._event_wake = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=self.options.senders, thread_name_prefix="alerting-send")
        # One contact's slow or failing channel (retries with backoff) never delays another's message.
        self._fanout = ThreadPoolExecutor(max_workers=4 * self.options.senders, thread_name_prefix="alerting-deliver")
        self._threads = [
            threading.Thread(target=self._event_loop, name="alerting-events", daemon=True),
            threading.Thread(target=self._escalation_loop, name="alerting-escalation", daemon=True),
        ]

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._init_cursor()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._event_wake.set()
        for t in self._threads:
            if t.is_alive():
                t.join(10)
        self._pool.shutdown(wait=True)
        self._fanout.shutdown(wait=True)

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
        send_now: list[int] = []
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

    def _send_claimed(self, step_ids: list[int]) -> None:
        """Steps claimed with their incident go to the senders at once, not at the escalation loop's
        next look: the first notification leaves as soon as the incident is committed."""
        for step_id in step_ids:
            self._pool.submit(self._send_step_logged, step_id).add_done_callback(lambda _: self._wake.set())

    def _apply(self, s: Session, event_id: int, e: Event) -> tuple[int | None, bool, list[int]]:
        """Open an incident (new: True, with the ids of the steps claimed for sending now) or append."""
        key = f"{e.institution_id or '-'}|{e.device_id}|{e.type.value}"
        incident = s.scalars(select(Incident).where(Incident.open_key == key)).one_or_none()
        if incident is not None:
            incident.event_count += 1
            incident.last_event_at = e.ts
            s.add(TimelineEntry(incident_id=incident.id, action="event", detail={
                "event_id": event_id, "state": e.state.value, "ts": e.ts.isoformat()}))
            return incident.id, False, []
        if e.state is EventState.CLEAR:
            return None, False, []
        incident_id, claimed = self._open(s, key, event_id, e)
        return incident_id, True, claimed

    def _open(self, s: Session, key: str, event_id: int, e: Event) -> tuple[int, list[int]]:
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
        s.add(incident)
        s.flush()
        s.add(TimelineEntry(incident_id=incident.id, at=now, action="opened", detail={
            "event_id": event_id, "event_ts": e.ts.isoformat(), "route": incident.route, "drill": drill,
            "receivers": decision.receivers if decision else []}))
        if decision is None:
            s.add(TimelineEntry(incident_id=incident.id, at=now, action="unrouted"))
            log.error("incident %s (%s) matches no route: nobody is notified", incident.id, e.type.value)
            return incident.id, []
        routine = holds_back(incident)  # not life-safety
        silences = matching(s, incident, now)
        if silences:  # recorded now; the notifications themselves are held back when they are due
            action = "silenced" if routine else "silence_bypassed"
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
                                            status="sending", claimed_by=self.options.instance_id, claimed_at=now))
            else:
                steps.append(EscalationStep(incident_id=incident.id, step_no=no, due_at=due, roles=roles))
        s.add_all(steps)
        s.flush()
        return incident.id, [st.id for st in steps if st.status == "sending"]

    @staticmethod
    def _in_drill(s: Session, institution_id: str, at: datetime) -> bool:
        q = select(DrillWindow.id).where(DrillWindow.institution_id == institution_id,
                                         DrillWindow.starts_at <= at, DrillWindow.ends_at > at)
        return s.scalars(q.limit(1)).first() is not None

    # -- escalation --------------------------------------------------------------------------------
    def _escalation_loop(self) -> None:
        """Keeps up to ``senders`` steps in flight, so one slow receiver never holds up another alarm."""
        inflight: set[Future[None]] = set()
        while not self._stop.is_set():
            inflight = {f for f in inflight if not f.done()}
            free = self.options.senders - len(inflight)
            claimed: list[int] = []
            if free > 0:
                try:
                    claimed = self._claim_due(limit=free)
                except OperationalError as exc:
                    log.warning("escalation: database unreachable (%s); retrying", exc.__class__.__name__)
                except Exception:
                    log.exception("escalation loop error")
            for step_id in claimed:
                future = self._pool.submit(self._send_step_logged, step_id)
                future.add_done_callback(lambda _: self._wake.set())
                inflight.add(future)
            if not claimed:
                self._wake.wait(self.options.tick_s)
                self._wake.clear()
        for future in inflight:
            future.result()

    def run_due_steps(self) -> int:
        """Claim and send (in parallel) the steps that are due now; returns how many were sent."""
        claimed = self._claim_due(limit=self.options.senders)
        for future in [self._pool.submit(self._send_step_logged, step_id) for step_id in claimed]:
            future.result()
        return len(claimed)

    def _send_step_logged(self, step_id: int) -> None:
        try:
            self._send_step(step_id)
        except Exception:  # the step stays claimed; after stale_claim_s another sender takes it over
            log.exception("sending escalation step %s failed", step_id)

    def _claim_due(self, limit: int = 20) -> list[int]:
        now = now_utc()
        stale = now - timedelta(seconds=self.options.stale_claim_s)
        with self._sessions.begin() as s:
            q = (select(EscalationStep.id)
                 .where(or_(EscalationStep.status == "pending",
                            (EscalationStep.status == "sending") & (EscalationStep.claimed_at < stale)),
                        EscalationStep.due_at <= now)
                 .order_by(EscalationStep.due_at).limit(limit))
            if s.bind is not None and s.bind.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)  # instances take disjoint steps
            ids = list(s.scalars(q))
            claimed: list[int] = []
            for step_id in ids:
                res = s.execute(update(EscalationStep)
                                .where(EscalationStep.id == step_id,
                                       or_(EscalationStep.status == "pending",
                                           (EscalationStep.status == "sending") & (EscalationStep.claimed_at < stale)))
                                .values(status="sending", claimed_by=self.options.instance_id, claimed_at=now))
                if res.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(step_id)
        return claimed

    def _send_step(self, step_id: int) -> None:
        now = now_utc()
        with self._sessions() as s:  # read everything first; the writes below are transactions of their own
            step = s.get(EscalationStep, step_id)
            assert step is not None
            incident = s.get(Incident, step.incident_id)
            assert incident is not None
            cancelled = incident.state != "triggered"  # acknowledged meanwhile: nothing more to send
            routine = holds_back(incident)  # life-safety is never silenced nor rate-limited
            held = matching(s, incident, now) if routine else []
            contacts = self._contacts(s, incident, step.roles)
            limited: list[str] = []
            if routine:
                limited = [c.id for c in contacts if self._sent_last_hour(s, c.id, now)
                           >= self.options.contact_rate_per_hour]
                contacts = [c for c in contacts if c.id not in limited]
            inst = s.get(Institution, incident.institution_id) if incident.institution_id else None
            device = s.get(Device, incident.device_id)
            step_no, roles, incident_id = step.step_no, list(step.roles), incident.id
            texts = {c.id: build(incident.id, incident.type, incident.drill, inst.name if inst else "未登记机构",
                                 incident.device_id, (device.name or device.room) if device else "", incident.opened_at,
                                 step.step_no, self.ack_url(incident.id, c.id)) for c in contacts}
            phone_channels = ("sms", "voice") if incident.severity in self.options.voice_severities else ("sms",)
            targets = [(c.id, ch, addr, secret) for c in contacts
                       for ch, addr, secret in _addresses(c, phone_channels) if ch in self._channels]
        if cancelled:
            with self._sessions.begin() as w:
                w.execute(update(EscalationStep).where(EscalationStep.id == step_id).values(status="cancelled"))
            return
        if held:  # silence / maintenance: the step waits for its end, then goes out if still unacknowledged
            until = max(x.ends_at for x in held)
            with self._sessions.begin() as w:
                w.execute(update(EscalationStep).where(EscalationStep.id == step_id)
                          .values(status="pending", due_at=until, claimed_by="", claimed_at=None))
                w.add(TimelineEntry(incident_id=incident_id, at=now, action="postponed", detail={
                    "step": step_no, "until": until.isoformat(), "silences": [x.id for x in held]}))
            return

        def deliver(t: tuple[str, str, str, str]) -> bool:
            return self._deliver(incident_id, step_id, t[0], t[1], t[2], t[3], texts[t[0]])

        # The first target on this thread (no hand-over for the common single receiver), the rest beside it.
        others = [self._fanout.submit(deliver, t) for t in targets[1:]]
        delivered = (deliver(targets[0]) if targets else 0) + sum(f.result() for f in others)
        now = now_utc()
        with self._sessions.begin() as s:
            s.execute(update(EscalationStep).where(EscalationStep.id == step_id).values(status="sent", sent_at=now))
            if limited:
                s.add(TimelineEntry(incident_id=incident_id, at=now, action="rate_limited", detail={
                    "step": step_no, "contacts": limited, "per_hour": self.options.contact_rate_per_hour}))
            s.add(TimelineEntry(incident_id=incident_id, at=now, action="notified", channel="escalation", detail={
                "step": step_no, "roles": roles, "targets": len(targets), "delivered": delivered}))
            if delivered == 0 and (targets or not limited):  # held back on purpose is not unreachable
                # Nobody reached: do not wait for the next step's delay.
                s.add(TimelineEntry(incident_id=incident_id, at=now, action="delivery_failed",
                                    detail={"step": step_no}))
                s.execute(update(EscalationStep)
                          .where(EscalationStep.incident_id == incident_id, EscalationStep.status == "pending")
                          .values(due_at=now))
                self._metrics.inc("anxin_escalation_unreached_total")
            self._schedule_repeat(s, incident_id, step_no, roles, now)
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

    def _deliver(self, incident_id: int, step_id: int, contact_id: str, channel_name: str, address: str,
                 secret: str, text: Any) -> bool:
        channel = self._channels.get(channel_name)
        if channel is None:
            return False
        backoff = self.options.retry_backoff_s
        for attempt in range(1, self.options.delivery_attempts + 1):
            try:
                receipt = channel.send(address, secret, text)
                ok, detail = True, receipt
            except ChannelError as exc:
                ok, detail = False, str(exc)
            with self._sessions.begin() as s:
                s.add(Delivery(incident_id=incident_id, step_id=step_id, contact_id=contact_id, channel=channel_name,
                               address=address, attempt=attempt, ok=ok, detail=detail[:1000]))
            self._metrics.inc("anxin_deliveries_total", channel=channel_name, ok=str(ok).lower())
            if ok:
                return True
            if attempt < self.options.delivery_attempts:
                time.sleep(backoff)
                backoff *= 2
        return False

    @staticmethod
    def _sent_last_hour(s: Session, contact_id: str, now: datetime) -> int:
        """Non-life-safety notifications that reached this contact in the last hour (one per step)."""
        q = (select(func.count(func.distinct(Delivery.step_id)))
             .join(Incident, Incident.id == Delivery.incident_id)
             .where(Delivery.contact_id == contact_id, Delivery.ok.is_(True),
                    Delivery.at > now - timedelta(hours=1), Incident.severity != "critical"))
        return int(s.scalar(q) or 0)

    @staticmethod
    def _contacts(s: Session, incident: Incident, roles: list[str]) -> list[Contact]:
        inst = s.get(Institution, incident.institution_id) if incident.institution_id else None
        district = inst.district if inst else None
        scope = Contact.institution_id == incident.institution_id
        if district:
            scope = or_(scope, (Contact.institution_id.is_(None)) & (Contact.district == district))
        return list(s.scalars(select(Contact).where(Contact.role.in_(roles), scope).order_by(Contact.id)))

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
            # Someone has it: stop escalating (steps already being sent finish).
            s.execute(update(EscalationStep)
                      .where(EscalationStep.incident_id == incident_id, EscalationStep.status == "pending")
                      .values(status="cancelled"))
            s.flush()
            s.expunge(incident)
        return incident

    def acknowledge(self, incident_id: int, actor: str, channel: str = "api") -> Incident:
        return self.transition(incident_id, "acknowledged", actor, channel)


def _expand(roles: list[str], receivers: list[str]) -> list[str]:
    out: list[str] = []
    for role in roles:
        out.extend(receivers if role == RECEIVERS else [role])
    return list(dict.fromkeys(out))


def _addresses(contact: Contact, phone_channels: tuple[str, ...]) -> list[tuple[str, str, str]]:
    out = [(channel, contact.phone, "") for channel in phone_channels if contact.phone]
    if contact.webhook_url:
        out.append(("webhook", contact.webhook_url, contact.webhook_secret))
    if contact.email:
        out.append(("email", contact.email, ""))
    if contact.channel and contact.channel_address:
        out.append((contact.channel, contact.channel_address, contact.channel_secret))
    return out

