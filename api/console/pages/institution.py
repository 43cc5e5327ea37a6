"""My institution page (本园): devices, the rooms' environment against the rule limits, open and past
alarms (acknowledge in two taps), drill windows and device test presses. The page is a frame; its
script fills it from ``/api/v1/institution-summary/{id}`` and keeps it current from the live feed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from alerting.messages import TYPE_NAMES
from anxin.db import Institution
from api.console.render import page
from api.deps import CurrentUser, SessionDep
from api.environment import ENV_METRICS
from api.routes.ack import STATE_NAMES
from api.routes.drill_windows import MAX_DRILL
from api.routes.feed import cursor_now

router = APIRouter(include_in_schema=False)


@router.get("/console/institution", response_class=HTMLResponse)
def show(request: Request, user: CurrentUser, s: SessionDep,
         institution: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    """Institution staff see their own; administrators, contractors and the commission choose among the
    institutions of their scope (``?institution=``)."""
    choices = list(s.execute(select(Institution.id, Institution.name, Institution.name_en)
                             .where(user.scope.where(Institution.id)).order_by(Institution.id)))
    if institution is not None and institution not in {c.id for c in choices}:
        raise HTTPException(404, "没有该机构 / no such institution")
    chosen = institution or (choices[0].id if len(choices) == 1 else None)
    return page(request, "institution.html", user, choices=choices, chosen=chosen, cursor=cursor_now(s),
                metrics=ENV_METRICS, types=TYPE_NAMES, states=STATE_NAMES,
                max_drill_hours=int(MAX_DRILL.total_seconds() // 3600))
