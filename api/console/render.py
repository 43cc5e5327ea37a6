"""Rendering console pages: one Jinja2 environment, the language of the page, Beijing time.

Every text is written in both languages where it is used, ``_("中文", "English")``: the page shows the
first in zh-CN (the default) and the second in English. No catalogue to keep in step with the pages."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.deps import Principal
from api.models import Role

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
SHANGHAI = ZoneInfo("Asia/Shanghai")
LANG_COOKIE = "anxin_lang"

templates = Jinja2Templates(directory=HERE / "templates")

# Security headers for every console page: nothing from elsewhere, no framing, no referrer with tokens.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'",
}

HOME = {Role.ADMIN: "/console/admin", Role.COMMISSION: "/console/overview", Role.CONTRACTOR: "/console/board",
        Role.INSTITUTION: "/console/institution"}


def language(request: Request, user: Principal | None = None) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if chosen in ("zh", "en"):
        return chosen
    return user.lang if user is not None and user.lang in ("zh", "en") else "zh"


def local(at: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A stored UTC time as Beijing time (the only time people see)."""
    return at.astimezone(SHANGHAI).strftime(fmt) if at is not None else "-"


def page(request: Request, template: str, user: Principal | None, status: int = 200,
         **context: Any) -> HTMLResponse:
    lang = language(request, user)

    def _(zh: str, en: str) -> str:
        return en if lang == "en" else zh

    response = templates.TemplateResponse(request, template, {
        "user": user, "lang": lang, "_": _, "local": local, "home": HOME.get(user.role) if user else "/login",
        "Role": Role, **context}, status_code=status)
    response.headers.update(HEADERS)
    return response
