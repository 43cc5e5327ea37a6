"""The audit log, for administrators: who changed what, when, from where; newest first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import Admin, SessionDep
from api.editing import NameFilter, WordFilter
from api.models import AuditEntry
from api.schemas import AuditOut

router = APIRouter(prefix="/api/v1/audit", tags=["admin"])


def audit_rows(s: Session, *, actor: str | None = None, resource: str | None = None, action: str | None = None,
               since: datetime | None = None, before_id: int | None = None, limit: int = 100) -> list[AuditOut]:
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if actor:
        q = q.where(AuditEntry.actor == actor)
    if resource:
        q = q.where(AuditEntry.resource == resource)
    if action:
        q = q.where(AuditEntry.action == action)
    if since is not None:
        q = q.where(AuditEntry.at >= since)
    if before_id is not None:
        q = q.where(AuditEntry.id < before_id)
    return [AuditOut(id=e.id, at=e.at, actor=e.actor, role=e.role, ip=e.ip, action=e.action, resource=e.resource,
                     resource_id=e.resource_id, summary=e.summary, detail=e.detail) for e in s.scalars(q)]


@router.get("")
def list_audit(s: SessionDep, _: Admin, actor: NameFilter = None,
               resource: WordFilter = None,
               action: WordFilter = None,
               since: Annotated[datetime | None, Query(description="ISO time; without an offset it is UTC")] = None,
               before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AuditOut]:
    """Newest first; page with ``before_id`` (the last id of the previous page)."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return audit_rows(s, actor=actor, resource=resource, action=action, since=since, before_id=before_id, limit=limit)
