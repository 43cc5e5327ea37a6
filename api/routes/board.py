"""The contractor's board (h-board): open incidents of the caller's scope, life-safety first, then the
oldest first, each with who was notified and whether it reached them. The board page reads this once
and then follows the live feed from the cursor it returns."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import case, select

from alerting.models import Incident
from api.deps import CurrentUser, SessionDep
from api.editing import IdFilter
from api.incident_views import LIFE_SAFETY_TYPES, last_entries, notifications_of, type_names
from api.routes.feed import cursor_now
from api.routes.incidents import OPEN_STATES, incident_rows
from api.schemas import BoardIncident, BoardOut

router = APIRouter(prefix="/api/v1/board", tags=["board"])


@router.get("")
def board(s: SessionDep, user: CurrentUser, institution: IdFilter = None,
          limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> BoardOut:
    """Open incidents (triggered, acknowledged, dispatched) in the caller's scope: life-safety (panic,
    smoke, gas) first, then by age, oldest first."""
    cursor = cursor_now(s)  # before the query: what happens from now on comes through the feed
    life_first = case((Incident.type.in_(LIFE_SAFETY_TYPES), 0), else_=1)
    q = (select(Incident).where(user.scope.where(Incident.institution_id), Incident.state.in_(OPEN_STATES))
         .order_by(life_first, Incident.opened_at, Incident.id).limit(limit))
    if institution is not None:
        q = q.where(Incident.institution_id == institution)
    incidents = list(s.scalars(q))
    ids = [i.id for i in incidents]
    notified, newest = notifications_of(s, ids), last_entries(s, ids)
    guards = {i.id: i.dispatched_guard or "" for i in incidents}
    out = []
    for row in incident_rows(s, incidents):
        zh, en = type_names(row.type)
        out.append(BoardIncident(**row.model_dump(), type_zh=zh, type_en=en, life_safety=row.type in LIFE_SAFETY_TYPES,
                                 guard=guards.get(row.id, ""), last_entry_id=newest.get(row.id, 0),
                                 notifications=notified.get(row.id, [])))
    return BoardOut(cursor=cursor, incidents=out)
