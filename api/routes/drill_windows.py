"""Drill windows (演练时段): while one is open, every alarm of the institution goes to the drill receivers
only, never to police or fire. So a window is short (at most four hours), never in the past, and can be
ended early. People enter Beijing times; they are stored in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerting.commissioning import DRILL_ROLE
from alerting.models import Contact, DrillWindow
from anxin.db import Institution
from api import audit
from api.console.render import SHANGHAI
from api.deps import Actor, CurrentUser, Principal, SessionDep, System
from api.editing import IdFilter
from api.models import AuditAction
from api.schemas import DrillWindowOut
from api.scope import Scope

MAX_DRILL = timedelta(hours=4)
START_GRACE = timedelta(minutes=5)  # "now" typed into a form is a minute old when it arrives
MAX_AHEAD = timedelta(days=90)
WindowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="drill window id")]

router = APIRouter(prefix="/api/v1/drill-windows", tags=["drill windows"])


def beijing_or_aware(value: datetime) -> datetime:
    """A time without a zone is Beijing time (what people type); stored in UTC. A time at the very edge
    of the calendar (year 1 or 9999) cannot be converted: a 422, never a 500 (schemathesis found it)."""
    try:
        return (value.replace(tzinfo=SHANGHAI) if value.tzinfo is None else value).astimezone(UTC)
    except OverflowError:
        raise ValueError("时间超出范围 / time out of range") from None


class DrillWindowIn(BaseModel):
    institution_id: str = Field(max_length=64)
    starts_at: datetime = Field(description="Beijing time if no zone is given")
    ends_at: datetime = Field(description="Beijing time if no zone is given")
    note: str = Field(default="", max_length=500)

    _zones = field_validator("starts_at", "ends_at")(beijing_or_aware)


def window_out(w: DrillWindow, now: datetime) -> DrillWindowOut:
    state = "upcoming" if w.starts_at > now else "active" if w.ends_at > now else "past"
    return DrillWindowOut(id=w.id, institution_id=w.institution_id, starts_at=w.starts_at, ends_at=w.ends_at,
                          note=w.note, state=state)


def scoped_institution(s: Session, scope: Scope, institution_id: str) -> Institution:
    inst = s.get(Institution, institution_id)
    if inst is None or not scope.allows(inst.id):
        raise HTTPException(404, "没有该机构 / no such institution")
    return inst


def drill_receivers(s: Session, institution: Institution) -> int:
    """Contacts with the drill role serving the institution (its own, or its district's)."""
    q = select(Contact.id).where(Contact.role == DRILL_ROLE, (Contact.institution_id == institution.id) | (
        Contact.institution_id.is_(None) & (Contact.district == institution.district)))
    return len(list(s.scalars(q)))


def add_window(s: Session, user: Principal, request: Request, institution_id: str, starts_at: datetime,
               ends_at: datetime, note: str, resource: str = "drill_window") -> DrillWindowOut:
    """Checks and stores a window with its audit row (the caller's transaction)."""
    now = datetime.now(UTC)
    if ends_at <= starts_at:
        raise HTTPException(422, "结束时间须晚于开始时间 / the end must be after the start")
    if starts_at < now - START_GRACE:
        raise HTTPException(422, "开始时间已过 / the start is in the past")
    if ends_at - starts_at > MAX_DRILL:
        raise HTTPException(422, "演练时段最长 4 小时 / a drill window lasts at most 4 hours")
    if starts_at > now + MAX_AHEAD:
        raise HTTPException(422, "最多提前 90 天登记 / register at most 90 days ahead")
    window = DrillWindow(institution_id=institution_id, starts_at=max(starts_at, now), ends_at=ends_at,
                         note=note.strip())
    s.add(window)
    s.flush()
    audit.record(s, user, request, AuditAction.CREATE, resource, str(window.id), note.strip(),
                 institution_id=institution_id, starts_at=window.starts_at.isoformat(),
                 ends_at=ends_at.isoformat())
    return window_out(window, now)


@router.get("")
def list_windows(s: SessionDep, user: CurrentUser,
                 institution: IdFilter = None,
                 limit: Annotated[int, Query(ge=1, le=200)] = 20) -> list[DrillWindowOut]:
    """Windows of the scope (or of one institution in it), latest start first."""
    q = (select(DrillWindow).where(user.scope.where(DrillWindow.institution_id))
         .order_by(DrillWindow.starts_at.desc(), DrillWindow.id.desc()).limit(limit))
    if institution is not None:
        scoped_institution(s, user.scope, institution)
        q = q.where(DrillWindow.institution_id == institution)
    now = datetime.now(UTC)
    return [window_out(w, now) for w in s.scalars(q)]


@router.post("", status_code=201)
def create_window(body: DrillWindowIn, request: Request, system: System, user: Actor) -> DrillWindowOut:
    with system.sessions.begin() as s:
        scoped_institution(s, user.scope, body.institution_id)
        return add_window(s, user, request, body.institution_id, body.starts_at, body.ends_at, body.note)


@router.post("/{window_id}/end")
def end_window(window_id: WindowId, request: Request, system: System, user: Actor) -> DrillWindowOut:
    """Ends a window now (alarms go to police and fire again at once); an upcoming one is cancelled."""
    now = datetime.now(UTC)
    with system.sessions.begin() as s:
        window = s.get(DrillWindow, window_id, with_for_update=True)
        if window is None or not user.scope.allows(window.institution_id):
            raise HTTPException(404, f"没有演练时段 no drill window {window_id}")
        if window.ends_at <= now:
            raise HTTPException(409, "该演练时段已结束 / this drill window is over")
        out = window_out(window, now)
        if window.starts_at > now:  # never held: gone, so the quarter's drill record does not count it
            s.delete(window)
            audit.record(s, user, request, AuditAction.DELETE, "drill_window", str(window.id), "cancelled")
            return out.model_copy(update={"state": "cancelled"})
        window.ends_at = now
        audit.record(s, user, request, AuditAction.UPDATE, "drill_window", str(window.id), "ended early",
                     ends_at=now.isoformat())
        return out.model_copy(update={"ends_at": now, "state": "past"})
