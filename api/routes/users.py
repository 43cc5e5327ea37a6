"""Console users, their roles and scopes, passwords and API keys. Administrators only. The rules (a
role needs its scope, usernames, the last active administrator stays) live in api/security.py, shared
with ``anxin user``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api import audit, security
from api.deps import Admin, SessionDep, System
from api.editing import PRINTABLE, Name, Text, Word, apply_changes, not_found
from api.models import ApiKey, AuditAction, Role, User
from api.schemas import ApiKeyOut, NewApiKey, UserOut

router = APIRouter(prefix="/api/v1/users", tags=["admin"])

UsernamePath = Annotated[str, Path(min_length=1, max_length=100, pattern=PRINTABLE)]
Password = Annotated[str, Field(min_length=1, max_length=200)]
ScopeId = Annotated[str, Field(max_length=64, pattern=PRINTABLE)]


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, Field(min_length=1, max_length=100)]
    password: Password
    role: Role
    display_name: Text = ""
    institution_id: ScopeId | None = None
    contractor_id: ScopeId | None = None
    districts: list[Word] = Field(default_factory=list, max_length=100)
    lang: Literal["zh", "en"] = "zh"


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    display_name: Name | None = None
    role: Role | None = None
    institution_id: ScopeId | None = None
    contractor_id: ScopeId | None = None
    districts: list[Word] | None = Field(default=None, max_length=100)
    lang: Literal["zh", "en"] | None = None
    active: bool | None = None


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: Password


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


@contextmanager
def refused_as_http() -> Iterator[None]:
    """The shared rules raise ValueError (422) or UserConflict (409)."""
    try:
        yield
    except security.UserConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def user_rows(s: Session, username: str | None = None) -> list[UserOut]:
    now = security.utcnow()
    keys = {k: v for k, v in s.execute(select(ApiKey.user_id, func.count()).where(ApiKey.revoked.is_(False))
                          .group_by(ApiKey.user_id))}
    q = select(User).order_by(User.role, User.username)
    if username is not None:
        q = q.where(User.username == username)
    return [UserOut(id=u.id, username=u.username, display_name=u.display_name, role=u.role,
                    institution_id=u.institution_id, contractor_id=u.contractor_id, districts=list(u.districts or []),
                    lang=u.lang, active=u.active, locked=u.locked_until is not None and u.locked_until > now,
                    created_at=u.created_at, api_keys=keys.get(u.id, 0)) for u in s.scalars(q)]


def _user(s: Session, username: str) -> User:
    found = s.scalar(select(User).where(User.username == username))
    if found is None:
        not_found("用户", "user", username)
    return found


def key_out(k: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(id=k.id, name=k.name, created_at=k.created_at, last_used_at=k.last_used_at, revoked=k.revoked)


@router.get("")
def list_users(s: SessionDep, _: Admin) -> list[UserOut]:
    return user_rows(s)


@router.get("/{username}")
def get_user(username: UsernamePath, s: SessionDep, _: Admin) -> UserOut:
    _user(s, username)
    return user_rows(s, username)[0]


@router.post("", status_code=201)
def create_user(body: UserIn, request: Request, system: System, user: Admin) -> UserOut:
    with system.sessions.begin() as s, refused_as_http():
        security.add_user(s, body.username, body.password, body.role, display_name=body.display_name,
                          institution_id=body.institution_id, contractor_id=body.contractor_id,
                          districts=body.districts, lang=body.lang)
        audit.record(s, user, request, AuditAction.CREATE, "user", body.username, body.display_name or body.username,
                     **body.model_dump(exclude={"password"}))
        return user_rows(s, body.username)[0]


@router.patch("/{username}")
def update_user(username: UsernamePath, body: UserPatch, request: Request, system: System, user: Admin) -> UserOut:
    """Role and scope, display name, language, active (``active: false`` disables: sessions end, keys stop)."""
    with system.sessions.begin() as s, refused_as_http():
        target = _user(s, username)
        given = body.model_dump(exclude_unset=True)
        changes: dict[str, object] = {}
        scope_fields = ("role", "institution_id", "contractor_id", "districts")
        if any(given.get(f) is not None for f in scope_fields):
            before = {f: getattr(target, f) for f in scope_fields}
            role = Role(given.get("role") or target.role)
            scope = security.check_scope(
                s, role, institution_id=given.get("institution_id") or target.institution_id,
                contractor_id=given.get("contractor_id") or target.contractor_id,
                districts=given["districts"] if given.get("districts") is not None else target.districts)
            after = {"role": scope.role.value, "institution_id": scope.institution_id,
                     "contractor_id": scope.contractor_id, "districts": scope.districts}
            if after != before:
                security.set_scope(s, target, scope)
                changes |= {f: [before[f], after[f]] for f in scope_fields if before[f] != after[f]}
        if given.get("active") is not None and given["active"] != target.active:
            security.set_active(s, target, given["active"])
            changes["active"] = [not given["active"], given["active"]]
        changes |= apply_changes(target, {k: given[k] for k in ("display_name", "lang") if given.get(k) is not None})
        if changes:
            audit.record(s, user, request, AuditAction.UPDATE, "user", username, target.display_name, changes=changes)
        s.flush()
        return user_rows(s, username)[0]


@router.post("/{username}/password", status_code=204)
def reset_password(username: UsernamePath, body: PasswordIn, request: Request, system: System,
                   user: Admin) -> Response:
    """A new password; the account is unlocked and its console sessions end."""
    with system.sessions.begin() as s, refused_as_http():
        security.set_password(s, _user(s, username), body.password)
        audit.record(s, user, request, AuditAction.UPDATE, "user", username, "password reset")
    return Response(status_code=204)


@router.get("/{username}/keys")
def list_keys(username: UsernamePath, s: SessionDep, _: Admin) -> list[ApiKeyOut]:
    target = _user(s, username)
    return [key_out(k) for k in s.scalars(select(ApiKey).where(ApiKey.user_id == target.id).order_by(ApiKey.id))]


@router.post("/{username}/keys", status_code=201)
def create_key(username: UsernamePath, body: KeyIn, request: Request, system: System, user: Admin) -> NewApiKey:
    """A new API key acting as this user; the key is in this answer only (stored as a hash)."""
    with system.sessions.begin() as s:
        target = _user(s, username)
        token = security.create_api_key(s, target, body.name)
        s.flush()
        key = s.scalar(select(ApiKey).where(ApiKey.token_hash == security.sha256(token)))
        assert key is not None
        audit.record(s, user, request, AuditAction.CREATE, "api_key", str(key.id), f"{username}: {body.name}",
                     user=username, name=body.name)
        return NewApiKey(**key_out(key).model_dump(), key=token)


@router.delete("/{username}/keys/{key_id}", status_code=204)
def revoke_key(username: UsernamePath, key_id: Annotated[int, Path(ge=1, le=2**63 - 1)], request: Request,
               system: System, user: Admin) -> Response:
    with system.sessions.begin() as s:
        target = _user(s, username)
        key = s.get(ApiKey, key_id)
        if key is None or key.user_id != target.id:
            not_found("密钥", "API key", str(key_id))
        if not key.revoked:
            key.revoked = True
            audit.record(s, user, request, AuditAction.UPDATE, "api_key", str(key_id),
                         f"{username}: {key.name} revoked", user=username, revoked=True)
    return Response(status_code=204)
