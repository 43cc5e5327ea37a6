"""Incident board page (事件看板, h-board): the contractor's live board of open incidents. The page is a
shell; static/board.js reads /api/v1/board and follows the live feed from the cursor taken here."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from alerting.messages import TYPE_NAMES
from api.console.render import page
from api.deps import CurrentUser, SessionDep
from api.incident_views import LIFE_SAFETY_TYPES
from api.routes.feed import cursor_now

router = APIRouter(include_in_schema=False)


@router.get("/console/board", response_class=HTMLResponse)
def show(request: Request, user: CurrentUser, s: SessionDep) -> HTMLResponse:
    return page(request, "board.html", user, cursor=cursor_now(s),
                type_names=orjson.dumps(TYPE_NAMES).decode(), life_safety=orjson.dumps(LIFE_SAFETY_TYPES).decode())
