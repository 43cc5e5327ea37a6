"""Passwords (argon2id), console sessions, API keys and the login throttle.

Only hashes are stored: SHA-256 of random session tokens and API keys (they carry 192 bits of randomness,
so a fast hash is enough), argon2id of passwords (people choose those)."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from anxin.db import Institution
from api.models import ApiKey, Contractor, District, LoginSession, Role, User

SESSION_COOKIE = "anxin_session"
SESSION_TTL = timedelta(hours=12)  # a control-room shift
LOCK_AFTER_FAILURES = 5  # consecutive wrong passwords lock the account ...
LOCK_FOR = timedelta(minutes=15)  # ... for this long
MIN_PASSWORD_CHARS = 10

_hasher = PasswordHasher()
# Verifying against this when the user does not exist costs the same time: no user enumeration by timing.
_DUMMY_HASH = _hasher.hash("anxin-no-such-user")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"密码至少 {MIN_PASSWORD_CHARS} 个字符 / a password needs at least {MIN_PASSWORD_CHARS} "
                         "characters")
    return _hasher.hash(password)


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


class LoginRefused(Exception):
    """Why a login failed, said the same way whether the user exists or not (except a lock)."""

    def __init__(self, zh: str, en: str, status: int = 401) -> None:
        super().__init__(en)
        self.zh, self.en, self.status = zh, en, status


def check_password(s: Session, username: str, password: str, now: datetime) -> User:
    """The user, or LoginRefused. Counts consecutive failures and locks the account after
    LOCK_AFTER_FAILURES of them for LOCK_FOR."""
    user = s.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        _verify(_DUMMY_HASH, password)
        raise LoginRefused("用户名或密码错误", "wrong username or password")
    if user.locked_until is not None and user.locked_until > now:
        raise LoginRefused("尝试次数过多，账号已暂时锁定，请稍后再试",
                           "too many attempts: the account is locked for a while, try again later", 429)
    if not _verify(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= LOCK_AFTER_FAILURES:
            user.locked_until = now + LOCK_FOR
            user.failed_logins = 0
        raise LoginRefused("用户名或密码错误", "wrong username or password")
    user.failed_logins = 0
    user.locked_until = None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str  # goes into the cookie, never stored
    csrf: str
    expires_at: datetime


def open_session(s: Session, user: User, ip: str, now: datetime) -> NewSession:
    token, csrf = new_token(), new_token()
    expires = now + SESSION_TTL
    s.add(LoginSession(token_hash=sha256(token), user_id=user.id, csrf=csrf, created_at=now, expires_at=expires,
                       ip=ip))
    s.execute(delete(LoginSession).where(LoginSession.expires_at < now))  # tidy up old ones
    return NewSession(token, csrf, expires)


def session_user(s: Session, token: str, now: datetime) -> tuple[User, LoginSession] | None:
    row = s.get(LoginSession, sha256(token))
    if row is None or row.expires_at <= now:
        return None
    user = s.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return user, row


def close_session(s: Session, token: str) -> None:
    s.execute(delete(LoginSession).where(LoginSession.token_hash == sha256(token)))


def create_api_key(s: Session, user: User, name: str) -> str:
    """A new key for ``user``; the plain key is returned once and never stored."""
    token = "ak_" + secrets.token_urlsafe(30)
    s.add(ApiKey(user_id=user.id, name=name, token_hash=sha256(token)))
    return token


def api_key_user(s: Session, token: str, now: datetime) -> User | None:
    key = s.scalar(select(ApiKey).where(ApiKey.token_hash == sha256(token), ApiKey.revoked.is_(False)))
    if key is None:
        return None
    user = s.get(User, key.user_id)
    if user is None or not user.active:
        return None
    if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=5):  # not a write per request
        key.last_used_at = now
    return user


USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")


class UserConflict(ValueError):
    """The change clashes with what exists (a taken username, the last active administrator)."""


@dataclass(frozen=True, slots=True)
class UserScope:
    """A role with the scope it needs, checked against the database (``check_scope``)."""

    role: Role
    institution_id: str | None
    contractor_id: str | None
    districts: list[str]


def check_scope(s: Session, role: Role, *, institution_id: str | None = None, contractor_id: str | None = None,
                districts: list[str] | None = None) -> UserScope:
    """The one check of a role's scope, for the CLI and the API alike: an institution user needs an
    existing institution, a contractor user an existing contractor, a commission user known districts
    (a district table row, or a district some institution names). Fields of other roles are dropped."""
    if role is Role.INSTITUTION:
        if not institution_id:
            raise ValueError("机构用户需要机构 / an institution user needs an institution (--institution)")
        if s.get(Institution, institution_id) is None:
            raise ValueError(f"没有机构 / no institution {institution_id!r}")
    if role is Role.CONTRACTOR:
        if not contractor_id:
            raise ValueError("安保公司用户需要安保公司 / a contractor user needs a contractor (--contractor)")
        if s.get(Contractor, contractor_id) is None:
            raise ValueError(f"没有安保公司 / no contractor {contractor_id!r}")
    names = [d.strip() for d in districts or [] if d.strip()]
    if role is Role.COMMISSION:
        if not names:
            raise ValueError("卫健委用户需要辖区 / a commission user needs districts (--districts)")
        unknown = [d for d in names if s.get(District, d) is None
                   and s.scalar(select(Institution.id).where(Institution.district == d).limit(1)) is None]
        if unknown:
            raise ValueError(f"没有辖区 / unknown district(s): {', '.join(unknown)}")
    return UserScope(role, institution_id if role is Role.INSTITUTION else None,
                     contractor_id if role is Role.CONTRACTOR else None,
                     list(dict.fromkeys(names)) if role is Role.COMMISSION else [])


def add_user(s: Session, username: str, password: str, role: Role, *, display_name: str = "",
             institution_id: str | None = None, contractor_id: str | None = None,
             districts: list[str] | None = None, lang: str = "zh") -> User:
    """Validates the username and that the role has its scope (``check_scope``)."""
    if not USERNAME.fullmatch(username):
        raise ValueError("用户名只能用字母、数字和 . _ @ -，最长 100 / a username is 1-100 letters, digits, . _ @ -")
    scope = check_scope(s, role, institution_id=institution_id, contractor_id=contractor_id, districts=districts)
    if s.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserConflict(f"用户已存在 / user {username!r} exists")
    user = User(username=username, display_name=display_name or username, password_hash=hash_password(password),
                role=role.value, institution_id=scope.institution_id, contractor_id=scope.contractor_id,
                districts=scope.districts, lang=lang)
    s.add(user)
    s.flush()
    return user


def set_scope(s: Session, user: User, scope: UserScope) -> None:
    keep_admin(s, user, role=scope.role, active=user.active)
    user.role = scope.role.value
    user.institution_id, user.contractor_id, user.districts = scope.institution_id, scope.contractor_id, scope.districts
    s.execute(delete(LoginSession).where(LoginSession.user_id == user.id))  # log in again under the new scope


def set_password(s: Session, user: User, password: str) -> None:
    """A new password unlocks the account and ends its console sessions."""
    user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until = 0, None
    s.execute(delete(LoginSession).where(LoginSession.user_id == user.id))


def set_active(s: Session, user: User, active: bool) -> None:
    """Disabling ends the user's console sessions; their API keys stop working too (checked per call)."""
    keep_admin(s, user, role=Role(user.role), active=active)
    user.active = active
    if not active:
        s.execute(delete(LoginSession).where(LoginSession.user_id == user.id))


def keep_admin(s: Session, user: User, *, role: Role, active: bool) -> None:
    """Refuses a change that would leave no active administrator (nobody could administer then)."""
    if user.role != Role.ADMIN.value or not user.active or (role is Role.ADMIN and active):
        return
    others = s.scalar(select(func.count()).select_from(User).where(
        User.role == Role.ADMIN.value, User.active.is_(True), User.id != user.id))
    if not others:
        raise UserConflict("不能停用或降级最后一个管理员 / the last active administrator cannot be disabled or "
                           "given another role")


class LoginThrottle:
    """At most ``limit`` login attempts per client address per ``window_s`` (in memory, per process):
    the per-account lock stops guessing one password, this stops spraying many accounts."""

    def __init__(self, limit: int = 20, window_s: float = 60.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, ip: str) -> bool:
        now = time.monotonic()
        with self._lock:
            q = self._seen.setdefault(ip, deque())
            while q and now - q[0] > self.window_s:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            if len(self._seen) > 10_000:  # forget idle addresses
                self._seen = {k: v for k, v in self._seen.items() if v and now - v[-1] <= self.window_s}
            return True


def utcnow() -> datetime:
    return datetime.now(UTC)
