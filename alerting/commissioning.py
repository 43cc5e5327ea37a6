"""Commissioning: a registered device is unverified until its test press has been seen end to end.

The proof is an incident of the device that (1) was raised inside a drill window of its institution, so
it was routed to the drill receivers only (never police or fire), (2) is an alarm or a ``test`` event,
(3) reached a drill receiver, and (4) was acknowledged by a person (ack link or API). Acknowledging such
an incident verifies the device and says so on the incident's timeline. A device whose test press
decodes to nothing (its alarm sits in a field its profile does not read) never gets an incident, so it
stays unverified: that is what this catches. Registering a device again with another profile or
institution makes it unverified again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from alerting.models import Contact, Delivery, Incident, TimelineAction, TimelineEntry
from anxin.db import Device, EventRecord, Institution, Verification

if TYPE_CHECKING:
    from anxin.config import Settings

DRILL_ROLE = "drill"


def proves(s: Session, incident: Incident, device: Device | None) -> bool:
    """Whether acknowledging ``incident`` proves ``device`` end to end (see the module docstring)."""
    if device is None or device.institution_id is None or device.institution_id != incident.institution_id:
        return False
    if not incident.drill or not (incident.type.startswith("alarm.") or incident.type == "test"):
        return False
    reached = (select(Delivery.id).join(Contact, Contact.id == Delivery.contact_id)
               .where(Delivery.incident_id == incident.id, Delivery.ok.is_(True), Contact.role == DRILL_ROLE))
    return s.scalars(reached.limit(1)).first() is not None


def on_acknowledged(s: Session, incident: Incident, actor: str, channel: str, at: datetime) -> bool:
    """Called in the transaction that first acknowledges ``incident``: verifies its device when the
    incident is the proof; returns whether it did."""
    device = s.get(Device, incident.device_id, with_for_update=True)
    if device is None or not proves(s, incident, device):
        return False
    first = device.verification != Verification.VERIFIED
    device.verification = Verification.VERIFIED
    device.verified_at = at
    device.verified_by = actor
    device.verified_incident_id = incident.id
    s.add(TimelineEntry(incident_id=incident.id, at=at, action=TimelineAction.DEVICE_VERIFIED, actor=actor,
                        channel=channel, detail={"device_id": device.id, "profile": device.profile,
                                                 "again": not first}))
    return True


def reset_if_changed(new: Device, old: Device | None) -> None:
    """A device registered again with another profile or institution has not been proven as it is now."""
    if old is not None and (old.profile, old.institution_id) != (new.profile, new.institution_id):
        new.verification = Verification.UNVERIFIED
        new.verified_at = None
        new.verified_by = ""
        new.verified_incident_id = None


def unverified_counts(s: Session) -> dict[str, int]:
    """institution id -> registered devices not verified yet."""
    q = (select(Device.institution_id, func.count()).where(Device.verification != Verification.VERIFIED,
                                                           Device.institution_id.is_not(None))
         .group_by(Device.institution_id))
    return {str(inst): int(n) for inst, n in s.execute(q).all()}


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device_id: str
    institution_id: str | None
    institution: str  # zh-CN name ("" when unknown)
    room: str
    profile: str
    verification: Verification
    verified_at: datetime | None
    verified_by: str
    verified_incident_id: int | None
    last_seen: datetime | None  # newest reading or event received from it


def device_rows(sessions: sessionmaker[Session], *, unverified_only: bool = False, institution: str | None = None,
                readings_seen: Mapping[str, float] | None = None) -> list[DeviceRow]:
    """The registered devices with their state; ``readings_seen`` (device -> epoch seconds of its newest
    reading, from the telemetry store) adds to the newest event stored here."""
    # max() keeps the column's type, so the time comes back aware (UTC) on SQLite too
    last = (select(EventRecord.device_id, func.max(EventRecord.received_at).label("seen"))
            .group_by(EventRecord.device_id).subquery())
    q = (select(Device, Institution.name, last.c.seen)
         .outerjoin(Institution, Institution.id == Device.institution_id)
         .outerjoin(last, last.c.device_id == Device.id)
         .order_by(Device.institution_id, Device.room, Device.id))
    if unverified_only:
        q = q.where(Device.verification != Verification.VERIFIED)
    if institution is not None:
        q = q.where(Device.institution_id == institution)
    with sessions() as s:
        rows = s.execute(q).all()
    readings_seen = readings_seen or {}

    def newest(device_id: str, event_seen: datetime | None) -> datetime | None:
        reading = readings_seen.get(device_id)
        seen = [x for x in (event_seen, datetime.fromtimestamp(reading, UTC) if reading else None) if x]
        return max(seen) if seen else None

    return [DeviceRow(d.id, d.institution_id, name or "", d.room or "", d.profile or "",
                      Verification(d.verification), d.verified_at, d.verified_by, d.verified_incident_id,
                      newest(d.id, seen)) for d, name, seen in rows]


def telemetry_seen(settings: Settings, lookback_s: int = 90 * 86400) -> dict[str, float]:
    """device -> epoch seconds of its newest reading in the telemetry store (empty if there is none yet)."""
    from alerting.thresholds import SqliteWindowSource, influx_last_seen, sqlite_last_seen, window_source

    source = window_source(settings)
    if isinstance(source, SqliteWindowSource):
        if not settings.sqlite_telemetry_path.exists():  # connecting would create it
            return {}
        return sqlite_last_seen(source, lookback_s)
    return influx_last_seen(source, lookback_s)

