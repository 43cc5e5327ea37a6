"""One incident (事件详情, h-board): its timeline, who was notified and whether it reached them, and the
actions (acknowledge, dispatch with a guard, resolve with a closure code, note). static/incident.js
renders it from the API and follows the live feed; the commission sees it without actions."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from alerting.messages import TYPE_NAMES
from api.console.render import page
from api.deps import CurrentUser, SessionDep, System
from api.incident_views import CLOSURE_TEXTS
from api.routes.feed import cursor_now
from api.routes.incidents import IncidentId, scoped_incident

router = APIRouter(include_in_schema=False)


@router.get("/console/incidents/{incident_id}", response_class=HTMLResponse)
def show(incident_id: IncidentId, request: Request, user: CurrentUser, s: SessionDep, system: System) -> HTMLResponse:
    cursor = cursor_now(s)  # before reading: the feed brings whatever changes after
    incident = scoped_incident(s, user.scope, incident_id)  # 404 outside the scope
    codes = [(code, zh, en) for code, (zh, en) in CLOSURE_TEXTS.items()]
    return page(request, "incident.html", user, incident=incident, cursor=cursor, closure_codes=codes,
                can_act=user.scope.can_act and system.alerting is not None,
                type_names=orjson.dumps(TYPE_NAMES).decode(),
                closure_texts=orjson.dumps(CLOSURE_TEXTS).decode())
