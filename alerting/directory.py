"""Who an incident's step goes to: the jurisdiction directory (contacts) resolved for the incident's
institution and district, with the duty contact as the named fallback.

A contact belongs to an institution, or (no institution) to a district; a ``duty`` contact may belong to
neither and then serves everywhere (the administrators' / contractor's duty desk). An incident without an
institution (unregistered device) matches no institution or district contact at all: it goes to the duty
contact only, never to the police of every district.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from alerting.models import Contact, Incident
from anxin.db import Device, Institution

DUTY = "duty"  # the role of the fallback contact
NOTICE_ROLES = ["contractor", DUTY]  # who hears that a responder's channel is failing
RESPONDER_ROLES = frozenset({"police", "fire", "contractor"})  # whose failing channel is worth a notice


class FallbackReason(StrEnum):
    UNREGISTERED_DEVICE = "unregistered_device"
    NO_INSTITUTION = "no_institution"  # registered, but no (known) institution
    NO_CONTACT_FOR_ROLE = "no_contact_for_role"


@dataclass(slots=True)
class Recipients:
    contacts: list[Contact]
    fallback: FallbackReason | None = None
    fallback_roles: list[str] = field(default_factory=list)  # roles nobody serves: sent to duty instead
    unroutable: bool = False  # a fallback was needed and there is no duty contact either


def unroutable_reason(s: Session, incident: Incident) -> FallbackReason | None:
    """Why the incident cannot be routed by jurisdiction at all (None: it has a known institution)."""
    if incident.institution_id and s.get(Institution, incident.institution_id) is not None:
        return None
    if s.get(Device, incident.device_id) is None:
        return FallbackReason.UNREGISTERED_DEVICE
    return FallbackReason.NO_INSTITUTION


def _scope(s: Session, incident: Incident, role: str) -> ColumnElement[bool] | None:
    """Contacts of the incident's institution, of its district, and (duty only) of everywhere."""
    inst = s.get(Institution, incident.institution_id) if incident.institution_id else None
    parts: list[ColumnElement[bool]] = []
    if inst is not None:
        parts.append(Contact.institution_id == inst.id)
        if inst.district:
            parts.append(and_(Contact.institution_id.is_(None), Contact.district == inst.district))
    if role == DUTY:
        parts.append(and_(Contact.institution_id.is_(None), Contact.district == ""))
    return or_(*parts) if parts else None


def contacts_for(s: Session, incident: Incident, role: str) -> list[Contact]:
    scope = _scope(s, incident, role)
    if scope is None:
        return []
    return list(s.scalars(select(Contact).where(Contact.role == role, scope).order_by(Contact.id)))


def recipients(s: Session, incident: Incident, roles: list[str], *, with_fallback: bool = True) -> Recipients:
    """The contacts of ``roles``; a role nobody serves (or an incident without an institution) goes to
    the duty contact instead, recorded as a fallback."""
    found: dict[str, Contact] = {}
    missing: list[str] = []
    for role in roles:
        contacts = contacts_for(s, incident, role)
        if not contacts:
            missing.append(role)
        for c in contacts:
            found.setdefault(c.id, c)
    if not missing or not with_fallback:
        return Recipients(list(found.values()))
    reason = unroutable_reason(s, incident) or FallbackReason.NO_CONTACT_FOR_ROLE
    duty = contacts_for(s, incident, DUTY)
    for c in duty:
        found.setdefault(c.id, c)
    return Recipients(list(found.values()), reason, missing, unroutable=not duty)


def addresses(contact: Contact, phone_channels: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(channel, address, secret) of every way the contact can be reached."""
    out = [(channel, contact.phone, "") for channel in phone_channels if contact.phone]
    if contact.webhook_url:
        out.append(("webhook", contact.webhook_url, contact.webhook_secret))
    if contact.email:
        out.append(("email", contact.email, ""))
    if contact.channel and contact.channel_address:
        out.append((contact.channel, contact.channel_address, contact.channel_secret))
    return out
