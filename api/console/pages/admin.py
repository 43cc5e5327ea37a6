"""Administration pages (管理): an index, then one page per resource with its table and forms. The pages
only read (through the same row functions as the API); every change goes through the JSON API from
static/admin.js (Anxin.send with the CSRF header), so validation and the audit log live in one place."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerting.models import Contact
from anxin.db import DeadLetter, Device, Institution, Verification
from api.console.pages import admin_ops, admin_people
from api.console.pages.admin_layout import admin_page
from api.deps import Admin, SessionDep, System
from api.editing import IdFilter
from api.models import AuditEntry, Contractor, District, User
from api.routes.contacts import contact_rows, known_roles
from api.routes.contractors import contractor_rows
from api.routes.devices import device_rows
from api.routes.districts import district_rows
from api.routes.institutions import institution_rows

router = APIRouter(include_in_schema=False)


def _count(s: Session, table: Any, *where: Any) -> int:
    return int(s.scalar(select(func.count()).select_from(table).where(*where)) or 0)


@router.get("/console/admin", response_class=HTMLResponse)
def index(request: Request, s: SessionDep, user: Admin) -> HTMLResponse:
    counts = {"districts": _count(s, District), "institutions": _count(s, Institution), "devices": _count(s, Device),
              "contacts": _count(s, Contact), "contractors": _count(s, Contractor),
              "users": _count(s, User, User.active.is_(True)),
              "dead-letters": _count(s, DeadLetter, DeadLetter.replayed_at.is_(None))}
    unverified = _count(s, Device, Device.verification != Verification.VERIFIED)
    last = s.scalar(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1))
    return admin_page(request, "admin_index.html", user, "", counts=counts, unverified=unverified, last=last)


@router.get("/console/admin/districts", response_class=HTMLResponse)
def districts(request: Request, s: SessionDep, user: Admin) -> HTMLResponse:
    return admin_page(request, "admin_districts.html", user, "districts", rows=district_rows(s))


@router.get("/console/admin/institutions", response_class=HTMLResponse)
def institutions(request: Request, s: SessionDep, user: Admin) -> HTMLResponse:
    return admin_page(request, "admin_institutions.html", user, "institutions",
                      rows=institution_rows(s, user.scope), districts=district_rows(s))


@router.get("/console/admin/devices", response_class=HTMLResponse)
def devices(request: Request, s: SessionDep, system: System, user: Admin,
            institution: IdFilter = None) -> HTMLResponse:
    chosen = institution or None
    return admin_page(request, "admin_devices.html", user, "devices",
                      rows=device_rows(s, user.scope, institution=chosen), chosen=chosen or "",
                      institutions=institution_rows(s, user.scope), profiles=sorted(system.profiles.by_name))


@router.get("/console/admin/contacts", response_class=HTMLResponse)
def contacts(request: Request, s: SessionDep, system: System, user: Admin) -> HTMLResponse:
    return admin_page(request, "admin_contacts.html", user, "contacts", rows=contact_rows(s),
                      roles=sorted(known_roles(system.settings)), institutions=institution_rows(s, user.scope),
                      districts=district_rows(s))


@router.get("/console/admin/contractors", response_class=HTMLResponse)
def contractors(request: Request, s: SessionDep, user: Admin) -> HTMLResponse:
    insts = institution_rows(s, user.scope)
    return admin_page(request, "admin_contractors.html", user, "contractors", rows=contractor_rows(s),
                      institutions=insts, names={i.id: i.name for i in insts})


router.include_router(admin_people.router)
router.include_router(admin_ops.router)
