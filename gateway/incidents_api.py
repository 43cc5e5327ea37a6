"""Incidents over HTTP for the people who handle them (contractor desk, institution staff, 卫健委 review):
list and read incidents with their timeline, and move them through their states.

Each operator has a token (``ANXIN_API_TOKENS=name:token,...``); the timeline records that name as the
actor, so who did what is not something a caller can claim for someone else.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from alerting.engine import TransitionError
from alerting.models import Incident, TimelineEntry
from gateway.service import Gateway

# Ids fit the database's 64-bit integers; a larger one is a 422, never a database error (500).
IncidentId = Annotated[int, Path(ge=1, le=2**63 - 1, description="incident id")]


class TransitionRequest(BaseModel):
    to: Literal["acknowledged", "dispatched", "resolved", "reviewed"]
    closure_code: str | None = Field(default=None, max_length=20)
    note: str = Field(default="", max_length=4000)


def incidents_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(prefix="/api/incidents")
    operators = [(name, token.encode()) for name, token in gateway.settings.api_tokens.items()]

    def operator(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        given = auth[7:].encode() if auth.lower().startswith("bearer ") else b""
        for name, token in operators:
            if given and hmac.compare_digest(given, token):
                return name
        raise HTTPException(401, "missing or wrong API token (Authorization: Bearer <token>)")

    @router.get("")
    def list_incidents(open_only: bool = True, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                       _: str = Depends(operator)) -> list[dict[str, Any]]:
        q = select(Incident).order_by(Incident.id.desc()).limit(limit)
        if open_only:
            q = q.where(Incident.state.in_(("triggered", "acknowledged", "dispatched")))
        with gateway.sessions() as s:
            return [_incident(i) for i in s.scalars(q)]

    @router.get("/{incident_id}")
    def get_incident(incident_id: IncidentId, _: str = Depends(operator)) -> dict[str, Any]:
        with gateway.sessions() as s:
            incident = s.get(Incident, incident_id)
            if incident is None:
                raise HTTPException(404, f"no incident {incident_id}")
            entries = s.scalars(select(TimelineEntry).where(TimelineEntry.incident_id == incident_id)
                                .order_by(TimelineEntry.id))
            return {**_incident(incident), "timeline": [
                {"at": _iso(e.at), "action": e.action, "actor": e.actor, "channel": e.channel, "detail": e.detail}
                for e in entries]}

    @router.post("/{incident_id}/transition")
    async def transition(incident_id: IncidentId, body: TransitionRequest,
                         actor: str = Depends(operator)) -> dict[str, Any]:
        if gateway.alerting is None:
            raise HTTPException(404, "alerting is disabled")
        try:
            incident = await run_in_threadpool(gateway.alerting.transition, incident_id, body.to, actor, "api",
                                               closure_code=body.closure_code, note=body.note)
        except TransitionError as exc:
            raise HTTPException(409, str(exc)) from None
        return _incident(incident)

    return router


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _incident(i: Incident) -> dict[str, Any]:
    return {"id": i.id, "type": i.type, "severity": i.severity, "state": i.state, "drill": i.drill,
            "institution_id": i.institution_id, "device_id": i.device_id, "route": i.route, "policy": i.policy,
            "event_count": i.event_count, "closure_code": i.closure_code, "fallback": i.fallback,
            "opened_at": _iso(i.opened_at),
            "acknowledged_at": _iso(i.acknowledged_at), "dispatched_at": _iso(i.dispatched_at),
            "resolved_at": _iso(i.resolved_at), "reviewed_at": _iso(i.reviewed_at)}
