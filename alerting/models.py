"""Alerting tables: contacts (jurisdiction directory), incidents with their timeline, escalation steps
and delivery attempts, drill windows. Every step of an incident is a row with a timestamp."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from anxin.db import Base, UTCDateTime, utcnow


class TimelineAction(StrEnum):
    """What a timeline row records (incident states are written under their own names too)."""

    OPENED = "opened"
    EVENT = "event"
    NOTIFIED = "notified"
    UNROUTED = "unrouted"  # no route matches the incident
    SILENCED = "silenced"
    SILENCE_BYPASSED = "silence_bypassed"
    POSTPONED = "postponed"
    RATE_LIMITED = "rate_limited"
    DELIVERY_FAILED = "delivery_failed"  # a step reached nobody (on its first round)
    FALLBACK = "fallback"  # sent to the duty contact instead: unregistered device, or no contact for a role
    UNROUTABLE = "unroutable"  # ... and there is no duty contact either: nobody could be notified
    CHANNEL_FAILING = "channel_failing"  # a contact's channel fails: the contractor / duty are told
    TAKEN_OVER = "taken_over"  # a step claimed by a sender that died was taken over by another
    DEVICE_VERIFIED = "device_verified"  # acknowledging this drill incident commissioned its device
    NOTE = "note"  # a person's note on the incident (any state)


class ClosureCode(StrEnum):
    """Why an incident was closed; resolving needs one. ``CLOSURE_LABELS`` has the zh-CN / English names."""

    REAL = "real"
    FALSE_ALARM = "false_alarm"
    TEST = "test"
    DRILL = "drill"
    DEVICE_FAULT = "device_fault"


CLOSURE_LABELS: dict[ClosureCode, tuple[str, str]] = {
    ClosureCode.REAL: ("真实警情", "Real emergency"),
    ClosureCode.FALSE_ALARM: ("误报", "False alarm"),
    ClosureCode.TEST: ("测试", "Test"),
    ClosureCode.DRILL: ("演练", "Drill"),
    ClosureCode.DEVICE_FAULT: ("设备故障", "Device fault"),
}


class IncidentState(StrEnum):
    """An incident's states, in order (alerting.engine.TRANSITIONS says which moves are allowed)."""

    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    RESOLVED = "resolved"
    REVIEWED = "reviewed"


class StepStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed by ``claimed_by``; the claim is renewed while it sends
    RETRYING = "retrying"  # some contacts not reached yet: sent again to them at ``due_at``
    SENT = "sent"
    CANCELLED = "cancelled"


class DeliveryStatus(StrEnum):
    SENDING = "sending"  # recorded before the network call
    DELIVERED = "delivered"
    FAILED = "failed"  # may succeed later: retried
    PERMANENT = "permanent"  # cannot succeed by retrying (4xx, template/signature/balance refused, bad address)
    UNKNOWN = "unknown"  # the sender died during the call: sent again with the same delivery key


class Contact(Base):
    """A receiver in the jurisdiction directory. ``role`` is what routes name (police, fire, contractor,
    institution, drill); a contact belongs to one institution, or to a whole district when
    ``institution_id`` is empty (a police station serves every institution of its district)."""

    __tablename__ = "contacts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(200))
    institution_id: Mapped[str | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    district: Mapped[str] = mapped_column(String(100), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    webhook_url: Mapped[str] = mapped_column(String(500), default="")
    webhook_secret: Mapped[str] = mapped_column(String(200), default="")
    channel: Mapped[str] = mapped_column(String(20), default="")  # dingtalk | wecom | feishu | sia_dc09
    channel_address: Mapped[str] = mapped_column(String(500), default="")
    channel_secret: Mapped[str] = mapped_column(String(200), default="")


class Incident(Base):
    """One per dedup key (institution, device, event type) while open. ``open_key`` holds the dedup key
    while the incident is open and NULL afterwards: a plain unique constraint then allows one open
    incident per key on SQLite and PostgreSQL alike, and concurrent gateways cannot open two."""

    __tablename__ = "incidents"
    __table_args__ = (UniqueConstraint("open_key", name="uq_incidents_open_key"),
                      Index("ix_incidents_institution_opened", "institution_id", "opened_at"))

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    open_key: Mapped[str | None] = mapped_column(String(400))
    institution_id: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), index=True)
    drill: Mapped[bool] = mapped_column(Boolean, default=False)
    false_alarm: Mapped[bool] = mapped_column(Boolean, default=False)
    closure_code: Mapped[str | None] = mapped_column(String(20))
    route: Mapped[str] = mapped_column(String(100), default="")
    policy: Mapped[str] = mapped_column(String(100), default="")
    # Why the incident's notifications went to the duty contact (FallbackReason), "" when routed normally.
    fallback: Mapped[str] = mapped_column(String(40), default="")
    event_count: Mapped[int] = mapped_column(Integer, default=1)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_event_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dispatched_guard: Mapped[str | None] = mapped_column(String(200))  # who was sent (dispatched)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TimelineEntry(Base):
    __tablename__ = "incident_timeline"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    action: Mapped[str] = mapped_column(String(40))  # a TimelineAction, or the state a transition reached
    actor: Mapped[str] = mapped_column(String(200), default="system")
    channel: Mapped[str] = mapped_column(String(40), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class EscalationStep(Base):
    """A step of the incident's escalation policy, copied in when the incident opens. A step is sent
    once: the sender claims it (pending -> sending) in the same transaction that reads it. Contacts it
    has not reached yet are sent again (retrying) until reached or the incident is acknowledged.

    A notice step (``notice_for`` set, ``step_no`` -1) tells the contractor and the duty contact that
    the contact ``notice_for`` cannot be reached for this incident: at most one per incident and contact.

    A feedback step (``feedback`` set to the state reached, ``step_no`` -2) tells the institution and
    the contractor that someone acknowledged or dispatched the incident: at most one per incident and state."""

    __tablename__ = "escalation_steps"
    __table_args__ = (Index("ix_escalation_due", "status", "due_at"),
                      UniqueConstraint("incident_id", "notice_for", name="uq_escalation_notice"),
                      UniqueConstraint("incident_id", "feedback", name="uq_escalation_feedback"))

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    step_no: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    roles: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default=StepStatus.PENDING)  # StepStatus
    claimed_by: Mapped[str] = mapped_column(String(100), default="")
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rounds: Mapped[int] = mapped_column(Integer, default=0)  # send rounds done (the first, then retries)
    notice_for: Mapped[str | None] = mapped_column(String(64))
    feedback: Mapped[str | None] = mapped_column(String(20))  # acknowledged | dispatched


class Delivery(Base):
    """One attempt to reach one contact on one channel, committed (status sending) before the network
    call and updated with its outcome. ``key`` is the delivery key the message carries: the same for
    every attempt of a step to a contact, so a receiver can tell a repeat."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_contact_at", "contact_id", "at"),  # per-contact rate limit
                      Index("ix_deliveries_step", "step_id"))  # what a step has delivered (retry, takeover)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("escalation_steps.id"))
    contact_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(500))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)  # the attempt started
    ok: Mapped[bool] = mapped_column(Boolean)  # status == delivered
    detail: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(12), default=DeliveryStatus.SENDING)  # DeliveryStatus
    key: Mapped[str] = mapped_column(String(300), default="")
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DrillWindow(Base):
    """While a drill window is open, the institution's alarms go to drill receivers only."""

    __tablename__ = "drill_windows"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    institution_id: Mapped[str] = mapped_column(ForeignKey("institutions.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    note: Mapped[str] = mapped_column(Text, default="")


class AlertingCursor(Base):
    """How far the alerting engine has read the ``events`` table, and which instance holds the lease
    to read it. The table is the alarm queue: an event committed before a crash still becomes an
    incident after the restart, and advancing the cursor commits with the incidents it produced."""

    __tablename__ = "alerting_cursor"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str] = mapped_column(String(100), default="")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Silence(Base):
    """A silence or maintenance window: while it runs, matching incidents are opened and recorded but
    their notifications wait until it ends (then go out if nobody has acknowledged meanwhile).
    Life-safety incidents (panic, smoke, gas) are never held back; the timeline says so."""

    __tablename__ = "silences"
    __table_args__ = (Index("ix_silences_ends_at", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20), default="silence")  # silence | maintenance
    institution_id: Mapped[str | None] = mapped_column(String(64))  # None: every institution
    device_id: Mapped[str | None] = mapped_column(String(200))  # None: every device of the scope
    types: Mapped[list[str]] = mapped_column(JSON, default=list)  # event type globs; empty: all
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
