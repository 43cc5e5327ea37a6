"""Institutions (托育机构). Everyone reads those in their scope (a row outside it is 404, like a missing
one); administrators create, change and delete them."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerting.models import Contact, DrillWindow, Incident
from anxin.db import Device, Institution
from api import audit
from api.deps import Admin, CurrentUser, SessionDep, System
from api.editing import (
    Ident,
    IdPath,
    Name,
    NameFilter,
    Text,
    apply_changes,
    conflict,
    not_found,
    unprocessable,
)
from api.models import AuditAction, District, User
from api.schemas import InstitutionOut
from api.scope import Scope

router = APIRouter(prefix="/api/v1/institutions", tags=["institutions"])


class InstitutionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Ident
    name: Name
    name_en: Text = ""
    district: Name


class InstitutionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    name_en: Text | None = None
    district: Name | None = None


def institution_rows(s: Session, scope: Scope, *, district: str | None = None,
                     institution_id: str | None = None) -> list[InstitutionOut]:
    devices = (select(Device.institution_id, func.count().label("n")).group_by(Device.institution_id).subquery())
    q = (select(Institution, devices.c.n).outerjoin(devices, devices.c.institution_id == Institution.id)
         .where(scope.where(Institution.id)).order_by(Institution.district, Institution.id))
    if district is not None:
        q = q.where(Institution.district == district)
    if institution_id is not None:
        q = q.where(Institution.id == institution_id)
    return [InstitutionOut(id=i.id, name=i.name, name_en=i.name_en, district=i.district, created_at=i.created_at,
                           devices=n or 0) for i, n in s.execute(q)]


def scoped_institution(s: Session, scope: Scope, institution_id: str) -> InstitutionOut:
    rows = institution_rows(s, scope, institution_id=institution_id)
    if not rows:
        not_found("机构", "institution", institution_id)
    return rows[0]


def _known_district(s: Session, name: str) -> None:
    if s.get(District, name) is None:
        unprocessable(f"没有辖区 {name!r}，请先在“辖区”中添加 / unknown district {name!r}: add it under "
                            "Districts first")


@router.get("")
def list_institutions(s: SessionDep, user: CurrentUser,
                      district: NameFilter = None) -> list[InstitutionOut]:
    """The institutions in the caller's scope."""
    return institution_rows(s, user.scope, district=district)


@router.get("/{institution_id}")
def get_institution(institution_id: IdPath, s: SessionDep, user: CurrentUser) -> InstitutionOut:
    return scoped_institution(s, user.scope, institution_id)


@router.post("", status_code=201)
def create_institution(body: InstitutionIn, request: Request, system: System, user: Admin) -> InstitutionOut:
    with system.sessions.begin() as s:
        if s.get(Institution, body.id) is not None:
            conflict(f"机构编号已存在 / institution {body.id!r} exists")
        _known_district(s, body.district)
        s.add(Institution(id=body.id, name=body.name, name_en=body.name_en, district=body.district))
        audit.record(s, user, request, AuditAction.CREATE, "institution", body.id, body.name, **body.model_dump())
        s.flush()
        return scoped_institution(s, user.scope, body.id)


@router.patch("/{institution_id}")
def update_institution(institution_id: IdPath, body: InstitutionPatch, request: Request, system: System,
                       user: Admin) -> InstitutionOut:
    with system.sessions.begin() as s:
        inst = s.get(Institution, institution_id)
        if inst is None:
            not_found("机构", "institution", institution_id)
        given = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
        if "district" in given:
            _known_district(s, given["district"])
        changes = apply_changes(inst, given)
        if changes:
            audit.record(s, user, request, AuditAction.UPDATE, "institution", institution_id, inst.name,
                         changes=changes)
        s.flush()
        return scoped_institution(s, user.scope, institution_id)


@router.delete("/{institution_id}", status_code=204)
def delete_institution(institution_id: IdPath, request: Request, system: System, user: Admin) -> Response:
    with system.sessions.begin() as s:
        inst = s.get(Institution, institution_id)
        if inst is None:
            not_found("机构", "institution", institution_id)
        held = {what: s.scalar(select(func.count()).select_from(table).where(column == institution_id)) or 0
                for what, table, column in (("devices", Device, Device.institution_id),
                                            ("contacts", Contact, Contact.institution_id),
                                            ("users", User, User.institution_id),
                                            ("drill windows", DrillWindow, DrillWindow.institution_id),
                                            ("incidents", Incident, Incident.institution_id))}
        if any(held.values()):
            listed = ", ".join(f"{n} {what}" for what, n in held.items() if n)
            conflict(f"机构仍有设备、联系人、用户、演练或事件记录，不能删除 / institution {institution_id!r} still has "
                     f"{listed}: move or remove them first (incident history is kept: an institution with "
                     "incidents cannot be deleted)")
        s.delete(inst)
        audit.record(s, user, request, AuditAction.DELETE, "institution", institution_id, inst.name)
    return Response(status_code=204)
