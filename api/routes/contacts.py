"""Contacts: the jurisdiction directory alarms are routed to (police and fire stations of a district, a
contractor's desk and staff of an institution, the duty desk) and how each is reached. Administrators
only (phone numbers and addresses). Secrets are write-only: answers say only whether one is set."""

from __future__ import annotations

import re
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerting.directory import DUTY, addresses
from alerting.models import Contact
from alerting.routing import load_routing
from anxin.config import Settings
from anxin.db import Institution
from api import audit
from api.deps import Admin, SessionDep, System
from api.editing import (
    Ident,
    IdFilter,
    IdPath,
    LongText,
    Name,
    Text,
    WordFilter,
    apply_changes,
    conflict,
    not_found,
    unprocessable,
)
from api.models import AuditAction, District
from api.schemas import ContactOut

router = APIRouter(prefix="/api/v1/contacts", tags=["admin"])

SECRETS = frozenset({"webhook_secret", "channel_secret"})
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PHONE = re.compile(r"\+?[0-9][0-9 -]{4,30}")
Channel = Literal["", "dingtalk", "wecom", "feishu", "sia_dc09"]


class ContactFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Ident | None = None
    name: Name | None = None
    institution_id: Ident | None = None
    district: Text | None = None
    phone: Text | None = None
    email: Text | None = None
    webhook_url: LongText | None = None
    webhook_secret: Text | None = None  # omitted: kept; "": cleared
    channel: Channel | None = None
    channel_address: LongText | None = None
    channel_secret: Text | None = None

    @model_validator(mode="after")
    def _formats(self) -> ContactFields:
        if self.phone and not PHONE.fullmatch(self.phone):
            raise ValueError("电话号码格式不对 / phone: digits, optionally + and spaces or dashes")
        if self.email and not EMAIL.fullmatch(self.email):
            raise ValueError("邮箱格式不对 / email: not an e-mail address")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ValueError("Webhook 地址须以 http:// 或 https:// 开头 / webhook_url must start with http:// or https://")
        return self


class ContactIn(ContactFields):
    id: Ident
    role: Ident
    name: Name


def contact_out(c: Contact) -> ContactOut:
    return ContactOut(id=c.id, role=c.role, name=c.name, institution_id=c.institution_id, district=c.district,
                      phone=c.phone, email=c.email, webhook_url=c.webhook_url,
                      webhook_secret_set=bool(c.webhook_secret), channel=c.channel,
                      channel_address=c.channel_address, channel_secret_set=bool(c.channel_secret),
                      channels=[name for name, _, _ in addresses(c, ("sms", "voice"))])


def contact_rows(s: Session, *, institution: str | None = None, role: str | None = None) -> list[ContactOut]:
    q = select(Contact).order_by(Contact.role, Contact.district, Contact.institution_id, Contact.id)
    if institution is not None:
        q = q.where(Contact.institution_id == institution)
    if role is not None:
        q = q.where(Contact.role == role)
    return [contact_out(c) for c in s.scalars(q)]


def known_roles(settings: Settings) -> set[str]:
    """The roles the route tree sends to (a contact of any other role would never be notified)."""
    routing = load_routing(settings.alerting_routes)
    roles = {r for route in routing.routes for r in route.receivers}
    roles |= {r for policy in routing.policies.values() for step in policy.steps for r in step.roles}
    return {r for r in roles if not r.startswith("$")} | {DUTY, "drill"}


def _check(s: Session, settings: Settings, c: Contact) -> None:
    roles = known_roles(settings)
    if c.role not in roles:
        unprocessable(f"没有角色 {c.role!r} / unknown role {c.role!r}: the routes send to {', '.join(sorted(roles))}")
    if c.institution_id and s.get(Institution, c.institution_id) is None:
        unprocessable(f"没有机构 / no institution {c.institution_id!r}")
    if c.district and s.get(District, c.district) is None:
        unprocessable(f"没有辖区 / unknown district {c.district!r}")
    if c.institution_id and c.district:
        unprocessable("联系人属于一个机构或一个辖区，不能两者都填 / a contact serves an institution or a whole "
                      "district, not both")
    if bool(c.channel) != bool(c.channel_address):
        unprocessable("通道和通道地址须同时填写 / channel and channel_address go together")
    if not addresses(c, ("sms",)):
        unprocessable("至少填写一种联系方式（电话、邮箱、Webhook 或通道）/ give at least one way to reach the "
                      "contact (phone, email, webhook or channel)")


def _contact(s: Session, contact_id: str) -> Contact:
    found = s.get(Contact, contact_id)
    if found is None:
        not_found("联系人", "contact", contact_id)
    return found


@router.get("")
def list_contacts(s: SessionDep, _: Admin, institution: IdFilter = None,
                  role: WordFilter = None) -> list[ContactOut]:
    return contact_rows(s, institution=institution, role=role)


@router.get("/{contact_id}")
def get_contact(contact_id: IdPath, s: SessionDep, _: Admin) -> ContactOut:
    return contact_out(_contact(s, contact_id))


@router.post("", status_code=201)
def create_contact(body: ContactIn, request: Request, system: System, user: Admin) -> ContactOut:
    with system.sessions.begin() as s:
        if s.get(Contact, body.id) is not None:
            conflict(f"联系人编号已存在 / contact {body.id!r} exists")
        values = {k: ("" if v is None and k not in ("institution_id",) else v) for k, v in body.model_dump().items()}
        contact = Contact(**values)
        _check(s, system.settings, contact)
        s.add(contact)
        audit.record(s, user, request, AuditAction.CREATE, "contact", body.id, body.name,
                     **{k: ("(set)" if v else "") if k in SECRETS else v for k, v in values.items()})
        s.flush()
        return contact_out(contact)


@router.patch("/{contact_id}")
def update_contact(contact_id: IdPath, body: ContactFields, request: Request, system: System,
                   user: Admin) -> ContactOut:
    with system.sessions.begin() as s:
        contact = _contact(s, contact_id)
        given = body.model_dump(exclude_unset=True)
        if "institution_id" in given and given["institution_id"] in ("", None):
            given["institution_id"] = None
        given = {k: v for k, v in given.items() if v is not None or k == "institution_id"}
        changes = apply_changes(contact, given, SECRETS)
        _check(s, system.settings, contact)
        if changes:
            audit.record(s, user, request, AuditAction.UPDATE, "contact", contact_id, contact.name, changes=changes)
        s.flush()
        return contact_out(contact)


@router.delete("/{contact_id}", status_code=204)
def delete_contact(contact_id: IdPath, request: Request, system: System, user: Admin) -> Response:
    with system.sessions.begin() as s:
        contact = _contact(s, contact_id)
        s.delete(contact)
        audit.record(s, user, request, AuditAction.DELETE, "contact", contact_id, contact.name, role=contact.role)
    return Response(status_code=204)
