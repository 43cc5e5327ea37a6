"""Device health page (设备状态)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from api.console.render import page
from api.deps import CurrentUser

router = APIRouter(include_in_schema=False)


@router.get("/console/devices", response_class=HTMLResponse)
def show(request: Request, user: CurrentUser) -> HTMLResponse:
    return page(request, "placeholder.html", user, title=("设备状态", "Device health"))
