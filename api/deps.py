"""Dependencies of every route, as ``Annotated`` types: the running system, a database session, the
current user with their scope, and the checks that guard changes (CSRF, role)."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session, sessionmaker

from alerting.engine import AlertingEngine
from anxin.config import Settings
from anxin.metrics import Metrics
from api import security
from api.models import Role, User
from api.scope import Scope, scope_of
from gateway.alarm_lane import AlarmLane
from gateway.mqtt_source import MqttSource
from gateway.pipeline import Pipeline
from gateway.profiles import ProfileSet
from gateway.registry import Registry
from gateway.workers import WorkerSupervisor


class Runtime(Protocol):
    """What the API needs of the running system (built by program/system.py)."""

    settings: Settings
    sessions: sessionmaker[Session]
    metrics: Metrics
    profiles: ProfileSet
    registry: Registry
    pipeline: Pipeline
    mqtt: MqttSource
    alarm_lane: AlarmLane | None
    workers: WorkerSupervisor | None
    alerting: AlertingEngine | None

    def readiness(self) -> dict[str, bool]: ...


def get_system(request: Request) -> Runtime:
    system: Runtime = request.app.state.system
    return system


System = Annotated[Runtime, Depends(get_system)]


def get_session(system: System) -> Iterator[Session]:
    with system.sessions() as s:
        yield s


SessionDep = Annotated[Session, Depends(get_session)]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a console user (cookie), or a user's API key / an operator token (bearer)."""

    username: str
    display_name: str
    role: Role
    scope: Scope
    user_id: int | None  # None: an operator token from ANXIN_API_TOKENS (full scope)
    csrf: str | None  # the console session's CSRF token; None for bearer callers (no cookie, no CSRF)
    lang: str = "zh"

    @property
    def actor(self) -> str:
        """The name written into timelines and the audit log."""
        return self.display_name if self.display_name == self.username else f"{self.display_name} ({self.username})"


class LoginRequired(Exception):
    """No valid credentials: the console redirects to the login page, the API answers 401."""


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


def principal_of(system: Runtime, s: Session, request: Request) -> Principal | None:
    now = security.utcnow()
    token = _bearer(request)
    if token:
        for name, operator_token in system.settings.api_tokens.items():
            if hmac.compare_digest(token.encode(), operator_token.encode()):
                return Principal(name, name, Role.ADMIN, Scope(Role.ADMIN, None), None, None)
        user = security.api_key_user(s, token, now)
        if user is None:
            return None
        s.commit()  # last_used_at
        return _of(s, user, None)
    cookie = request.cookies.get(security.SESSION_COOKIE, "")
    found = security.session_user(s, cookie, now) if cookie else None
    if found is None:
        return None
    user, login = found
    return _of(s, user, login.csrf)


def _of(s: Session, user: User, csrf: str | None) -> Principal:
    return Principal(user.username, user.display_name or user.username, Role(user.role), scope_of(s, user), user.id,
                     csrf, user.lang)


def optional_user(request: Request, system: System, s: SessionDep) -> Principal | None:
    return principal_of(system, s, request)


def current_user(request: Request, system: System, s: SessionDep) -> Principal:
    principal = principal_of(system, s, request)
    if principal is None:
        raise LoginRequired()
    return principal


MaybeUser = Annotated[Principal | None, Depends(optional_user)]
CurrentUser = Annotated[Principal, Depends(current_user)]


async def check_csrf(request: Request, user: CurrentUser) -> Principal:
    """A change made with the console's cookie must carry its CSRF token (header X-CSRF-Token, or the form
    field ``csrf``): another site can make the browser send the cookie, never the token."""
    if user.csrf is None or request.method in ("GET", "HEAD", "OPTIONS"):
        return user
    given = request.headers.get("x-csrf-token", "")
    if not given and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf")
        given = value if isinstance(value, str) else ""
    if not given or not hmac.compare_digest(given.encode(), user.csrf.encode()):
        raise HTTPException(403, "CSRF 令牌缺失或错误 / missing or wrong CSRF token; reload the page")
    return user


def actor(user: Annotated[Principal, Depends(check_csrf)]) -> Principal:
    """A user who may change things in their scope (everyone but the commission, which reviews)."""
    if not user.scope.can_act:
        raise HTTPException(403, "卫健委账号只读 / the commission's accounts are read-only")
    return user


def admin(user: Annotated[Principal, Depends(check_csrf)]) -> Principal:
    if user.role is not Role.ADMIN:
        raise HTTPException(403, "需要管理员 / administrators only")
    return user


Actor = Annotated[Principal, Depends(actor)]  # may act (CSRF checked for console sessions)
Admin = Annotated[Principal, Depends(admin)]  # administrator (CSRF checked for console sessions)
