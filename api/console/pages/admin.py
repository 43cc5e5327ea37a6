"""Administration page (管理)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from api.console.render import page
from api.deps import Admin

router = APIRouter(include_in_schema=False)


@router.get("/console/admin", response_class=HTMLResponse)
def show(request: Request, user: Admin) -> HTMLResponse:
    return page(request, "placeholder.html", user, title=("管理", "Administration"))
