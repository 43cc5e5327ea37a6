"""Passwords (argon2id), console sessions, API keys and the login throttle.

Only hashes are stored: SHA-256 of random session tokens and API keys (they carry 192 bits of randomness,
so a fast hash is enough), argon2id of passwords (people choose those)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.models import ApiKey, LoginSession, Role, User

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


def add_user(s: Session, username: str, password: str, role: Role, *, display_name: str = "",
             institution_id: str | None = None, contractor_id: str | None = None,
             districts: list[str] | None = None, lang: str = "zh") -> User:
    """Validates that the role has its scope (an institution, a contractor, districts)."""
    if role is Role.INSTITUTION and not institution_id:
        raise ValueError("机构用户需要机构 / an institution user needs --institution")
    if role is Role.CONTRACTOR and not contractor_id:
        raise ValueError("安保公司用户需要安保公司 / a contractor user needs --contractor")
    if role is Role.COMMISSION and not districts:
        raise ValueError("卫健委用户需要辖区 / a commission user needs --districts")
    if s.scalar(select(User.id).where(User.username == username)) is not None:
        raise ValueError(f"用户已存在 / user {username!r} exists")
    user = User(username=username, display_name=display_name or username, password_hash=hash_password(password),
                role=role.value, institution_id=institution_id if role is Role.INSTITUTION else None,
                contractor_id=contractor_id if role is Role.CONTRACTOR else None,
                districts=list(districts or []) if role is Role.COMMISSION else [], lang=lang)
    s.add(user)
    s.flush()
    return user


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
