"""The demo's people, one per role, with random passwords kept beside the demo's other secrets."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.models import Role, User
from api.security import add_user, hash_password


@dataclass(frozen=True, slots=True)
class DemoUser:
    username: str
    display_name: str
    role: Role
    institution_id: str | None = None
    contractor_id: str | None = None
    districts: tuple[str, ...] = ()


DEMO_USERS = (
    DemoUser("admin", "平台管理员", Role.ADMIN),
    DemoUser("weijianwei", "厦门市卫健委", Role.COMMISSION, districts=("思明区", "湖里区")),
    DemoUser("anbao", "安保监控中心值班员", Role.CONTRACTOR, contractor_id="xm-anbao"),
    DemoUser("yuanzhang", "小太阳托育园园长", Role.INSTITUTION, institution_id="xm-siming-001"),
)


def demo_passwords() -> dict[str, str]:
    return {u.username: secrets.token_urlsafe(9) for u in DEMO_USERS}


def ensure_demo_users(sessions: sessionmaker[Session], passwords: dict[str, str]) -> None:
    """Creates the demo's users, or sets their passwords back to the kept ones."""
    with sessions.begin() as s:
        for u in DEMO_USERS:
            existing = s.scalar(select(User).where(User.username == u.username))
            if existing is not None:
                existing.password_hash = hash_password(passwords[u.username])
                existing.failed_logins, existing.locked_until = 0, None
                continue
            add_user(s, u.username, passwords[u.username], u.role, display_name=u.display_name,
                     institution_id=u.institution_id, contractor_id=u.contractor_id, districts=list(u.districts))
