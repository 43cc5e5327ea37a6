"""What people see of an incident beyond its row (h-board): its type in both languages, who was notified
and whether it reached them (summarised from the delivery attempts), the newest timeline
entry (so a live page can tell an old feed message from a new one). Batched: one query per kind of fact
for a whole page of incidents."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerting.messages import TYPE_NAMES
from alerting.models import CLOSURE_LABELS, Contact, Delivery, DeliveryStatus, EscalationStep, TimelineEntry
from anxin.model import LIFE_SAFETY
from api.schemas import ContactNotification

LIFE_SAFETY_TYPES = tuple(sorted(t.value for t in LIFE_SAFETY))
# A contact's summary status: the best outcome of any attempt (delivered beats still sending beats ...).
STATUS_RANK: dict[str, int] = {s.value: n for n, s in enumerate((
    DeliveryStatus.DELIVERED, DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN, DeliveryStatus.FAILED,
    DeliveryStatus.PERMANENT))}
# Closure codes as people read them (zh, en).
CLOSURE_TEXTS: dict[str, tuple[str, str]] = {code.value: texts for code, texts in CLOSURE_LABELS.items()}


def type_names(event_type: str) -> tuple[str, str]:
    return TYPE_NAMES.get(event_type, (event_type, event_type))


def notifications_of(s: Session, incident_ids: Sequence[int]) -> dict[int, list[ContactNotification]]:
    """incident id -> one summary per contact notified (in the order they were first tried)."""
    if not incident_ids:
        return {}
    # Plain columns, not ORM objects: a board of hundreds of incidents reads thousands of attempts.
    rows = s.execute(select(Delivery.incident_id, Delivery.contact_id, Delivery.channel, Delivery.status, Delivery.at,
                            Delivery.answered_at, Delivery.detail, Contact.name, Contact.role,
                            EscalationStep.notice_for, EscalationStep.feedback)
                     .outerjoin(Contact, Contact.id == Delivery.contact_id)
                     .outerjoin(EscalationStep, EscalationStep.id == Delivery.step_id)
                     .where(Delivery.incident_id.in_(sorted(set(incident_ids))))
                     .order_by(Delivery.id)).all()
    grouped: dict[int, dict[tuple[str, str], list[Any]]] = defaultdict(dict)
    for r in rows:
        grouped[r.incident_id].setdefault((r.contact_id, purpose_of(r.notice_for, r.feedback)), []).append(r)
    out: dict[int, list[ContactNotification]] = {}
    for incident_id, contacts in grouped.items():
        summaries = []
        for (contact_id, purpose), ds in contacts.items():
            best = min((d.status for d in ds), key=lambda st: STATUS_RANK.get(st, 99))
            delivered_at = [d.answered_at or d.at for d in ds if d.status == DeliveryStatus.DELIVERED]
            failing = [d for d in ds if d.status != DeliveryStatus.DELIVERED and d.detail]
            summaries.append(ContactNotification(
                contact_id=contact_id, name=ds[0].name or contact_id, role=ds[0].role or "", purpose=purpose,
                channels=list(dict.fromkeys(d.channel for d in ds)), status=str(best),
                delivered=best == DeliveryStatus.DELIVERED, attempts=len(ds), first_at=ds[0].at,
                delivered_at=min(delivered_at) if delivered_at else None,
                last_error=failing[-1].detail[:300] if failing else ""))
        out[incident_id] = summaries
    return out


def purpose_of(notice_for: str | None, feedback: str | None) -> str:
    """alarm: the incident itself; notice: a contact of it cannot be reached; feedback: who has it."""
    return "notice" if notice_for else f"feedback:{feedback}" if feedback else "alarm"


def last_entries(s: Session, incident_ids: Sequence[int]) -> dict[int, int]:
    """incident id -> id of its newest timeline entry."""
    if not incident_ids:
        return {}
    q = (select(TimelineEntry.incident_id, func.max(TimelineEntry.id))
         .where(TimelineEntry.incident_id.in_(sorted(set(incident_ids)))).group_by(TimelineEntry.incident_id))
    return {int(i): int(m) for i, m in s.execute(q).all()}
