"""Tables of the API's own: people and their roles, the contractors and whom they serve, districts,
login sessions, API keys, and the audit log of every change made through the API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from anxin.db import Base, UTCDateTime, utcnow


class Role(StrEnum):
    """What a user may see: admin everything; commission its districts (read-only); contractor the
    institutions of its contracts; institution its own institution."""

    ADMIN = "admin"
    COMMISSION = "commission"
    CONTRACTOR = "contractor"
    INSTITUTION = "institution"


class District(Base):
    __tablename__ = "districts"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)  # as on institutions.district
    name_en: Mapped[str] = mapped_column(String(200), default="")


class Contractor(Base):
    """A security company; ``ContractorInstitution`` rows are its contracts."""

    __tablename__ = "contractors"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200), default="")


class ContractorInstitution(Base):
    __tablename__ = "contractor_institutions"

    contractor_id: Mapped[str] = mapped_column(ForeignKey("contractors.id", ondelete="CASCADE"), primary_key=True)
    institution_id: Mapped[str] = mapped_column(ForeignKey("institutions.id", ondelete="CASCADE"), primary_key=True,
                                                index=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id
    role: Mapped[str] = mapped_column(String(20))  # Role
    institution_id: Mapped[str | None] = mapped_column(ForeignKey("institutions.id"))  # role institution
    contractor_id: Mapped[str | None] = mapped_column(ForeignKey("contractors.id"))  # role contractor
    districts: Mapped[list[str]] = mapped_column(JSON, default=list)  # role commission
    lang: Mapped[str] = mapped_column(String(8), default="zh")  # zh | en
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)  # consecutive; reset on success
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LoginSession(Base):
    """A console login. The cookie holds a random token; only its SHA-256 is stored, so a copy of the
    database does not log anyone in. ``csrf`` is the token the console's forms and scripts send back."""

    __tablename__ = "login_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ip: Mapped[str] = mapped_column(String(64), default="")


class ApiKey(Base):
    """A bearer token for a machine acting as a user (a contractor's dispatch system, a report job)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditAction(StrEnum):
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    INCIDENT = "incident"  # an incident action (acknowledge, dispatch, resolve, note)
    REPLAY = "replay"  # a dead letter fed through the decoder again


class AuditEntry(Base):
    """Who did what, when, from where: every change and every incident action made through the API."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))  # username ("" when a login names nobody known)
    role: Mapped[str] = mapped_column(String(20), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(20))  # AuditAction
    resource: Mapped[str] = mapped_column(String(40), default="")  # e.g. "device", "incident", "user"
    resource_id: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    summary: Mapped[str] = mapped_column(Text, default="")
