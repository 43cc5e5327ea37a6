"""Administration pages for operations: the routing/escalation policies (read-only), dead letters with
their replay, and the audit log with filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from api.console.pages.admin_layout import admin_page
from api.console.render import SHANGHAI
from api.deps import Admin, SessionDep, System
from api.editing import NameFilter, WordFilter
from api.routes.audit_log import audit_rows
from api.routes.dead_letters import dead_letter_rows, get_dead_letter
from api.routes.policies import policies

router = APIRouter(include_in_schema=False)
PAGE = 50


@router.get("/console/admin/policies", response_class=HTMLResponse)
def policies_page(request: Request, system: System, user: Admin) -> HTMLResponse:
    return admin_page(request, "admin_policies.html", user, "policies", p=policies(system))


@router.get("/console/admin/dead-letters", response_class=HTMLResponse)
def dead_letters(request: Request, s: SessionDep, user: Admin,
                 before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
                 pending_only: bool = False) -> HTMLResponse:
    rows = dead_letter_rows(s, before_id=before_id, limit=PAGE, pending_only=pending_only)
    return admin_page(request, "admin_dead_letters.html", user, "dead-letters", rows=rows,
                      pending_only=pending_only, older=rows[-1].id if len(rows) == PAGE else None)


@router.get("/console/admin/dead-letters/{dead_letter_id}", response_class=HTMLResponse)
def dead_letter(dead_letter_id: Annotated[int, Path(ge=1, le=2**63 - 1)], request: Request, s: SessionDep,
                user: Admin) -> HTMLResponse:
    return admin_page(request, "admin_dead_letter.html", user, "dead-letters",
                      d=get_dead_letter(dead_letter_id, s, user))


@router.get("/console/admin/audit", response_class=HTMLResponse)
def audit(request: Request, s: SessionDep, user: Admin, actor: NameFilter = None, resource: WordFilter = None,
          action: WordFilter = None, since: WordFilter = None,
          before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None) -> HTMLResponse:
    since_utc = _beijing(since or "")
    rows = audit_rows(s, actor=actor or None, resource=resource or None, action=action or None, since=since_utc,
                      before_id=before_id, limit=PAGE)
    filters = {"actor": actor or "", "resource": resource or "", "action": action or "",
               "since": since if since_utc else ""}
    return admin_page(request, "admin_audit.html", user, "audit", rows=rows, filters=filters,
                      older=rows[-1].id if len(rows) == PAGE else None)


def _beijing(text: str) -> datetime | None:
    """A time typed in Beijing time (a datetime-local field), as UTC; None when empty or not a time."""
    try:
        at = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    if at is None:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=SHANGHAI)).astimezone(UTC)
