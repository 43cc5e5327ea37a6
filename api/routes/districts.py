"""Districts (区): the jurisdictions institutions lie in and commission users oversee. Administrators only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerting.models import Contact
from anxin.db import Institution
from api import audit
from api.deps import Admin, SessionDep, System
from api.editing import Name, NamePath, Text, apply_changes, conflict, not_found
from api.models import AuditAction, District, User
from api.schemas import DistrictOut

router = APIRouter(prefix="/api/v1/districts", tags=["admin"])


class DistrictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    name_en: Text = ""


class DistrictPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name_en: Text


def district_rows(s: Session) -> list[DistrictOut]:
    counts = {k: v for k, v in s.execute(select(Institution.district, func.count()).group_by(Institution.district))}
    return [DistrictOut(name=d.name, name_en=d.name_en, institutions=counts.get(d.name, 0))
            for d in s.scalars(select(District).order_by(District.name))]


def _district(s: Session, name: str) -> District:
    found = s.get(District, name)
    if found is None:
        not_found("辖区", "district", name)
    return found


@router.get("")
def list_districts(s: SessionDep, _: Admin) -> list[DistrictOut]:
    return district_rows(s)


@router.post("", status_code=201)
def create_district(body: DistrictIn, request: Request, system: System, user: Admin) -> DistrictOut:
    with system.sessions.begin() as s:
        if s.get(District, body.name) is not None:
            conflict(f"辖区已存在 / district {body.name!r} exists")
        s.add(District(name=body.name, name_en=body.name_en))
        audit.record(s, user, request, AuditAction.CREATE, "district", body.name, f"district {body.name}",
                     **body.model_dump())
        s.flush()
        return next(d for d in district_rows(s) if d.name == body.name)


@router.patch("/{name}")
def update_district(name: NamePath, body: DistrictPatch, request: Request, system: System, user: Admin) -> DistrictOut:
    with system.sessions.begin() as s:
        district = _district(s, name)
        changes = apply_changes(district, body.model_dump(exclude_unset=True))
        if changes:
            audit.record(s, user, request, AuditAction.UPDATE, "district", name, f"district {name}", changes=changes)
        s.flush()
        return next(d for d in district_rows(s) if d.name == name)


@router.delete("/{name}", status_code=204)
def delete_district(name: NamePath, request: Request, system: System, user: Admin) -> Response:
    with system.sessions.begin() as s:
        district = _district(s, name)
        institutions = s.scalar(select(func.count()).select_from(Institution).where(Institution.district == name))
        contacts = s.scalar(select(func.count()).select_from(Contact).where(Contact.district == name))
        commission = sum(1 for ds in s.scalars(select(User.districts).where(User.role == "commission"))
                         if name in (ds or []))
        if institutions or contacts or commission:
            conflict(f"辖区仍有 {institutions} 个机构、{contacts} 个联系人、{commission} 个卫健委用户 / "
                     f"district {name!r} still has {institutions} institution(s), {contacts} contact(s), "
                     f"{commission} commission user(s): move them first")
        s.delete(district)
        audit.record(s, user, request, AuditAction.DELETE, "district", name, f"district {name}")
    return Response(status_code=204)
