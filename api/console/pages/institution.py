"""My institution page (本园)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from api.console.render import page
from api.deps import CurrentUser

router = APIRouter(include_in_schema=False)


@router.get("/console/institution", response_class=HTMLResponse)
def show(request: Request, user: CurrentUser) -> HTMLResponse:
    return page(request, "placeholder.html", user, title=("本园", "My institution"))
