"""The audit log: one row per change and per incident action made through the API (who, when, from where)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from api.deps import Principal, client_ip
from api.models import AuditAction, AuditEntry


def record(s: Session, who: Principal, request: Request, action: AuditAction, resource: str, resource_id: str,
           summary: str = "", **detail: Any) -> None:
    """Adds the row to ``s``: it commits with the change it describes, or not at all."""
    s.add(AuditEntry(actor=who.username, role=who.role.value, ip=client_ip(request), action=action.value,
                     resource=resource, resource_id=resource_id, summary=summary, detail=detail))
