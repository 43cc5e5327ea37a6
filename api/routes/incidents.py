"""Incidents for the people who handle them (contractor desk, institution staff, 卫健委 review): list and
read them with their timeline and deliveries, and move them through their states. Every query is limited
to the caller's scope; the timeline and the audit log name who acted."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from alerting.engine import AlertingEngine, TransitionError
from alerting.models import Delivery, Incident, TimelineEntry
from anxin.db import Device, Institution
from api import audit
from api.deps import Actor, CurrentUser, Principal, Runtime, SessionDep, System
from api.editing import IdFilter
from api.incident_views import notifications_of
from api.models import AuditAction
from api.schemas import ContactNotification, DeliveryOut, IncidentDetail, IncidentOut, TimelineOut
from api.scope import Scope

# Ids fit the database's 64-bit integers; a larger one is a 422, never a database error (500).
IncidentId = Annotated[int, Path(ge=1, le=2**63 - 1, description="incident id")]
OPEN_STATES = ("triggered", "acknowledged", "dispatched")

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])


class TransitionRequest(BaseModel):
    to: Literal["acknowledged", "dispatched", "resolved", "reviewed"]
    closure_code: str | None = Field(default=None, max_length=20)
    note: str = Field(default="", max_length=4000)
    guard: str | None = Field(default=None, min_length=1, max_length=200,
                              description="dispatched only: the guard sent (recorded on the timeline)")


class NoteRequest(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


def scoped_incident(s: Session, scope: Scope, incident_id: int) -> Incident:
    """The incident if it exists and lies in the scope; 404 otherwise (the same answer for both)."""
    incident = s.get(Incident, incident_id)
    if incident is None or not scope.allows(incident.institution_id):
        raise HTTPException(404, f"没有事件 no incident {incident_id}")
    return incident


@router.get("")
def list_incidents(s: SessionDep, user: CurrentUser, open_only: bool = True,
                   institution: IdFilter = None,
                   before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[IncidentOut]:
    """Newest first; page with ``before_id`` (the last id of the previous page)."""
    q = select(Incident).where(user.scope.where(Incident.institution_id)).order_by(Incident.id.desc()).limit(limit)
    if open_only:
        q = q.where(Incident.state.in_(OPEN_STATES))
    if institution is not None:
        q = q.where(Incident.institution_id == institution)
    if before_id is not None:
        q = q.where(Incident.id < before_id)
    return incident_rows(s, list(s.scalars(q)))


@router.get("/{incident_id}")
def get_incident(incident_id: IncidentId, s: SessionDep, user: CurrentUser) -> IncidentDetail:
    incident = scoped_incident(s, user.scope, incident_id)
    timeline = s.scalars(select(TimelineEntry).where(TimelineEntry.incident_id == incident_id)
                         .order_by(TimelineEntry.id))
    deliveries = s.scalars(select(Delivery).where(Delivery.incident_id == incident_id).order_by(Delivery.id))
    [row] = incident_rows(s, [incident])
    return IncidentDetail(
        **row.model_dump(),
        timeline=[TimelineOut(id=e.id, at=e.at, action=e.action, actor=e.actor, channel=e.channel, detail=e.detail)
                  for e in timeline],
        deliveries=[DeliveryOut(at=d.at, contact_id=d.contact_id, channel=d.channel, status=d.status,
                                attempt=d.attempt, detail=d.detail) for d in deliveries])


@router.post("/{incident_id}/transition")
async def transition(incident_id: IncidentId, body: TransitionRequest, request: Request, system: System,
                     user: Actor) -> IncidentOut:
    def run() -> IncidentOut:
        engine = _engine_for(system, user, incident_id)
        if body.guard is not None and body.to != "dispatched":
            raise HTTPException(422, "guard 只用于派警 / a guard is named only when dispatching")
        try:
            incident = engine.transition(incident_id, body.to, user.actor, "api",
                                                  closure_code=body.closure_code, note=body.note,
                                                  guard=body.guard or "")
        except TransitionError as exc:
            raise HTTPException(409, str(exc)) from None
        with system.sessions.begin() as s:
            audit.record(s, user, request, AuditAction.INCIDENT, "incident", str(incident_id), body.to,
                         to=body.to, closure_code=body.closure_code, note=body.note,
                         **({"guard": body.guard} if body.guard is not None else {}))
            [row] = incident_rows(s, [incident])
        return row

    return await run_in_threadpool(run)


@router.post("/{incident_id}/notes")
async def add_note(incident_id: IncidentId, body: NoteRequest, request: Request, system: System,
                   user: Actor) -> IncidentOut:
    """A free note on the incident's timeline (who wrote it is the caller)."""
    def run() -> IncidentOut:
        engine = _engine_for(system, user, incident_id)
        try:
            engine.add_note(incident_id, user.actor, body.text, "api")
        except TransitionError as exc:
            raise HTTPException(409, str(exc)) from None
        with system.sessions.begin() as s:
            audit.record(s, user, request, AuditAction.INCIDENT, "incident", str(incident_id), "note", note=body.text)
            [row] = incident_rows(s, [scoped_incident(s, user.scope, incident_id)])
        return row

    return await run_in_threadpool(run)


@router.get("/{incident_id}/notifications")
def notifications(incident_id: IncidentId, s: SessionDep, user: CurrentUser) -> list[ContactNotification]:
    """Who was notified and whether it reached them: one summary per contact (all attempts)."""
    scoped_incident(s, user.scope, incident_id)
    return notifications_of(s, [incident_id]).get(incident_id, [])


def _engine_for(system: Runtime, user: Principal, incident_id: int) -> AlertingEngine:
    """The engine to act on an incident with: 404 outside the scope (before any change), or when
    alerting is disabled."""
    with system.sessions() as s:
        scoped_incident(s, user.scope, incident_id)
    if system.alerting is None:
        raise HTTPException(404, "告警功能未启用 / alerting is disabled")
    return system.alerting


def incident_rows(s: Session, incidents: list[Incident]) -> list[IncidentOut]:
    """Incidents with their institution's name and the device's room (two queries for the whole page)."""
    inst_ids = {i.institution_id for i in incidents if i.institution_id}
    names: dict[str, str] = {r.id: r.name for r in s.execute(
        select(Institution.id, Institution.name).where(Institution.id.in_(inst_ids)))} if inst_ids else {}
    dev_ids = {i.device_id for i in incidents}
    rooms: dict[str, str] = {r.id: r.room for r in s.execute(
        select(Device.id, Device.room).where(Device.id.in_(dev_ids)))} if dev_ids else {}
    return [IncidentOut(
        id=i.id, type=i.type, severity=i.severity, state=i.state, drill=i.drill, institution_id=i.institution_id,
        institution=names.get(i.institution_id or ""), device_id=i.device_id, room=rooms.get(i.device_id) or "",
        route=i.route, policy=i.policy, event_count=i.event_count, closure_code=i.closure_code, fallback=i.fallback,
        opened_at=i.opened_at, acknowledged_at=i.acknowledged_at, dispatched_at=i.dispatched_at,
        resolved_at=i.resolved_at, reviewed_at=i.reviewed_at) for i in incidents]
