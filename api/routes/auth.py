"""Logging in and out of the console, the language switch, and who am I (``/api/v1/me``)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api import audit, security
from api.console.render import HOME, LANG_COOKIE, page
from api.deps import CurrentUser, MaybeUser, Principal, System, check_csrf, client_ip
from api.models import AuditAction, AuditEntry, Role
from api.schemas import Me
from api.scope import scope_of

router = APIRouter(tags=["auth"])


def _safe_next(target: str) -> str:
    """Only a path on this site: a login link must not send people elsewhere."""
    parts = urlsplit(target)
    return target if target.startswith("/") and not target.startswith("//") and not parts.netloc else ""


@router.get("/", include_in_schema=False)
def root(user: MaybeUser) -> RedirectResponse:
    return RedirectResponse(HOME[user.role] if user is not None else "/login", status_code=303)


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request, user: MaybeUser, next: str = "") -> Response:
    if user is not None and user.csrf is not None:
        return RedirectResponse(_safe_next(next) or HOME[user.role], status_code=303)
    return page(request, "login.html", None, next=_safe_next(next), username="", error="")


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
async def login(request: Request, system: System, username: Annotated[str, Form(max_length=100)],
                password: Annotated[str, Form(max_length=200)], next: Annotated[str, Form(max_length=500)] = ""
                ) -> Response:
    ip = client_ip(request)
    lang = request.cookies.get(LANG_COOKIE, "zh")

    def refused(zh: str, en: str, status: int) -> Response:
        return page(request, "login.html", None, status=status, next=_safe_next(next), username=username,
                    error=en if lang == "en" else zh)

    throttle: security.LoginThrottle = request.app.state.login_throttle  # one per application
    if not throttle.allow(ip):
        return refused("尝试次数过多，请一分钟后再试", "too many attempts from this address: wait a minute", 429)

    def check() -> security.NewSession | security.LoginRefused:
        now = security.utcnow()
        with system.sessions.begin() as s:
            try:
                user = security.check_password(s, username, password, now)
            except security.LoginRefused as exc:
                s.add(AuditEntry(actor=username[:100], ip=ip, action=AuditAction.LOGIN_FAILED.value,
                                 resource="user", resource_id=username[:200], summary=exc.en))
                return exc
            made = security.open_session(s, user, ip, now)
            who = Principal(user.username, user.display_name, Role(user.role), scope_of(s, user), user.id,
                            made.csrf, user.lang)
            audit.record(s, who, request, AuditAction.LOGIN, "user", user.username)
            target = _safe_next(next) or HOME[who.role]
        made_target.append(target)
        return made

    made_target: list[str] = []
    result = await run_in_threadpool(check)
    if isinstance(result, security.LoginRefused):
        return refused(result.zh, result.en, result.status)
    response = RedirectResponse(made_target[0], status_code=303)
    response.set_cookie(security.SESSION_COOKIE, result.token, max_age=int(security.SESSION_TTL.total_seconds()),
                        httponly=True, samesite="lax", secure=system.settings.public_url.startswith("https://"),
                        path="/")
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, system: System, user: CurrentUser) -> Response:
    await check_csrf(request, user)
    token = request.cookies.get(security.SESSION_COOKIE, "")

    def close() -> None:
        with system.sessions.begin() as s:
            security.close_session(s, token)
            audit.record(s, user, request, AuditAction.LOGOUT, "user", user.username)

    await run_in_threadpool(close)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(security.SESSION_COOKIE, path="/")
    return response


@router.post("/lang", include_in_schema=False)
def set_language(lang: Annotated[str, Form(pattern="^(zh|en)$")],
                 back: Annotated[str, Form(max_length=500)] = "/") -> Response:
    """Only sets a preference cookie (nothing stored): back to the page it was chosen on."""
    response = RedirectResponse(_safe_next(back) or "/", status_code=303)
    response.set_cookie(LANG_COOKIE, lang, max_age=365 * 24 * 3600, samesite="lax", path="/")
    return response


@router.get("/api/v1/me", tags=["auth"])
def me(user: CurrentUser) -> Me:
    ids = user.scope.institutions
    return Me(username=user.username, display_name=user.display_name, role=user.role.value,
              institutions=None if ids is None else sorted(ids), lang=user.lang)
