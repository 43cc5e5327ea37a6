"""Security contractors (安保公司) and the institutions their contracts cover: a contractor's users see
exactly those institutions. Administrators only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from anxin.db import Institution
from api import audit
from api.deps import Admin, SessionDep, System
from api.editing import Ident, IdPath, Name, Text, apply_changes, conflict, not_found, unprocessable
from api.models import AuditAction, Contractor, ContractorInstitution, User
from api.schemas import ContractorOut

router = APIRouter(prefix="/api/v1/contractors", tags=["admin"])


class ContractorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Ident
    name: Name
    name_en: Text = ""
    institutions: list[Ident] = Field(default_factory=list, max_length=10_000)


class ContractorPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    name_en: Text | None = None


class ContractInstitutions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    institutions: list[Ident] = Field(max_length=10_000)


def contractor_rows(s: Session, contractor_id: str | None = None) -> list[ContractorOut]:
    q = select(Contractor).order_by(Contractor.id)
    if contractor_id is not None:
        q = q.where(Contractor.id == contractor_id)
    served: dict[str, list[str]] = {}
    for cid, iid in s.execute(select(ContractorInstitution.contractor_id, ContractorInstitution.institution_id)
                              .order_by(ContractorInstitution.institution_id)):
        served.setdefault(cid, []).append(iid)
    users = {k: v for k, v in s.execute(select(User.contractor_id, func.count()).where(User.contractor_id.is_not(None))
                           .group_by(User.contractor_id))}
    return [ContractorOut(id=c.id, name=c.name, name_en=c.name_en, institutions=served.get(c.id, []),
                          users=users.get(c.id, 0)) for c in s.scalars(q)]


def _contractor(s: Session, contractor_id: str) -> Contractor:
    found = s.get(Contractor, contractor_id)
    if found is None:
        not_found("安保公司", "contractor", contractor_id)
    return found


def _set_institutions(s: Session, contractor_id: str, wanted: list[str]) -> dict[str, list[str]]:
    ids = sorted(set(wanted))
    known = set(s.scalars(select(Institution.id).where(Institution.id.in_(ids)))) if ids else set()
    if unknown := [i for i in ids if i not in known]:
        unprocessable(f"没有机构 / no institution(s): {', '.join(unknown)}")
    before = set(s.scalars(select(ContractorInstitution.institution_id)
                           .where(ContractorInstitution.contractor_id == contractor_id)))
    s.execute(delete(ContractorInstitution).where(ContractorInstitution.contractor_id == contractor_id,
                                                  ContractorInstitution.institution_id.not_in(ids)))
    for iid in sorted(set(ids) - before):
        s.add(ContractorInstitution(contractor_id=contractor_id, institution_id=iid))
    return {"added": sorted(set(ids) - before), "removed": sorted(before - set(ids))}


@router.get("")
def list_contractors(s: SessionDep, _: Admin) -> list[ContractorOut]:
    return contractor_rows(s)


@router.get("/{contractor_id}")
def get_contractor(contractor_id: IdPath, s: SessionDep, _: Admin) -> ContractorOut:
    _contractor(s, contractor_id)
    return contractor_rows(s, contractor_id)[0]


@router.post("", status_code=201)
def create_contractor(body: ContractorIn, request: Request, system: System, user: Admin) -> ContractorOut:
    with system.sessions.begin() as s:
        if s.get(Contractor, body.id) is not None:
            conflict(f"安保公司编号已存在 / contractor {body.id!r} exists")
        s.add(Contractor(id=body.id, name=body.name, name_en=body.name_en))
        s.flush()
        _set_institutions(s, body.id, body.institutions)
        audit.record(s, user, request, AuditAction.CREATE, "contractor", body.id, body.name, **body.model_dump())
        s.flush()
        return contractor_rows(s, body.id)[0]


@router.patch("/{contractor_id}")
def update_contractor(contractor_id: IdPath, body: ContractorPatch, request: Request, system: System,
                      user: Admin) -> ContractorOut:
    with system.sessions.begin() as s:
        contractor = _contractor(s, contractor_id)
        changes = apply_changes(contractor, {k: v for k, v in body.model_dump(exclude_unset=True).items()
                                             if v is not None})
        if changes:
            audit.record(s, user, request, AuditAction.UPDATE, "contractor", contractor_id, contractor.name,
                         changes=changes)
        s.flush()
        return contractor_rows(s, contractor_id)[0]


@router.put("/{contractor_id}/institutions")
def set_institutions(contractor_id: IdPath, body: ContractInstitutions, request: Request, system: System,
                     user: Admin) -> ContractorOut:
    """The institutions the contractor serves, as a whole list (its users see these from now on)."""
    with system.sessions.begin() as s:
        contractor = _contractor(s, contractor_id)
        changes = _set_institutions(s, contractor_id, body.institutions)
        if changes["added"] or changes["removed"]:
            audit.record(s, user, request, AuditAction.UPDATE, "contractor", contractor_id, contractor.name,
                         institutions=changes)
        s.flush()
        return contractor_rows(s, contractor_id)[0]


@router.delete("/{contractor_id}", status_code=204)
def delete_contractor(contractor_id: IdPath, request: Request, system: System, user: Admin) -> Response:
    with system.sessions.begin() as s:
        contractor = _contractor(s, contractor_id)
        users = s.scalar(select(func.count()).select_from(User).where(User.contractor_id == contractor_id))
        if users:
            conflict(f"安保公司仍有 {users} 个用户 / contractor {contractor_id!r} still has {users} user(s): give them "
                     "another contractor or role first")
        s.execute(delete(ContractorInstitution).where(ContractorInstitution.contractor_id == contractor_id))
        s.delete(contractor)
        audit.record(s, user, request, AuditAction.DELETE, "contractor", contractor_id, contractor.name)
    return Response(status_code=204)
