"""Silences and maintenance windows: which ones hold an incident's notifications back right now.

Life-safety classes (panic, smoke, gas) are never held back, whatever a silence says: the caller checks
``holds_back`` and records a bypass instead.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from alerting.models import Incident, Silence

KINDS = ("silence", "maintenance")


def matching(s: Session, incident: Incident, at: datetime) -> list[Silence]:
    """The silences running at ``at`` whose scope and event types cover the incident."""
    q = select(Silence).where(
        Silence.starts_at <= at, Silence.ends_at > at,
        or_(Silence.institution_id.is_(None), Silence.institution_id == incident.institution_id),
        or_(Silence.device_id.is_(None), Silence.device_id == incident.device_id))
    return [x for x in s.scalars(q) if not x.types or any(fnmatch.fnmatchcase(incident.type, t) for t in x.types)]


def holds_back(incident: Incident) -> bool:
    return incident.severity != "critical"


def add(s: Session, *, kind: str = "silence", institution: str | None = None, device: str | None = None,
        types: list[str] | None = None, starts_at: datetime, ends_at: datetime, created_by: str,
        reason: str) -> Silence:
    """Validate and add a silence or maintenance window (registry import, CLI, API)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if ends_at <= starts_at:
        raise ValueError("a silence must end after it starts")
    if not reason.strip():
        raise ValueError("a silence needs a reason (it is part of the audit trail)")
    silence = Silence(kind=kind, institution_id=institution, device_id=device, types=list(types or []),
                      starts_at=starts_at, ends_at=ends_at, created_by=created_by, reason=reason)
    s.add(silence)
    s.flush()
    return silence
