"""Device health across the caller's institutions (h-board): offline, low battery, tamper (each as its
newest event says), not heard from (nothing received for its profile's heartbeat interval x the offline
factor, or 24 h when the profile names none), and unverified (commissioning). Scoped in the query."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from enum import StrEnum

from fastapi import APIRouter
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from alerting.commissioning import telemetry_seen
from anxin.db import Device, EventRecord, Institution, Verification
from anxin.model import EventState, EventType
from api.deps import CurrentUser, System
from api.editing import IdFilter
from api.schemas import DeviceHealthOut
from api.scope import Scope

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/device-health", tags=["devices"])

UNKNOWN_HEARTBEAT_S = 24 * 3600  # "not heard from" for a device whose profile names no heartbeat interval


class DeviceProblem(StrEnum):
    OFFLINE = "offline"
    BATTERY_LOW = "battery_low"
    TAMPER = "tamper"
    SILENT = "silent"  # not heard from
    UNVERIFIED = "unverified"


# The event types whose newest state (active or clear) is a device's condition now.
STATE_EVENTS = {EventType.OFFLINE.value: DeviceProblem.OFFLINE, EventType.BATTERY_LOW.value: DeviceProblem.BATTERY_LOW,
                EventType.TAMPER.value: DeviceProblem.TAMPER}


@router.get("")
async def device_health(system: System, user: CurrentUser,
                        institution: IdFilter = None,
                        problem: DeviceProblem | None = None,
                        problems_only: bool = False) -> list[DeviceHealthOut]:
    """Registered devices of the caller's institutions with their problems (``problem`` keeps those that
    have it; ``problems_only`` those that have any), by institution and room."""
    def run() -> list[DeviceHealthOut]:
        rows = health_rows(system, user.scope, institution)
        if problem is not None:
            rows = [r for r in rows if problem.value in r.problems]
        elif problems_only:
            rows = [r for r in rows if r.problems]
        return rows

    return await run_in_threadpool(run)


def health_rows(system: System, scope: Scope, institution: str | None) -> list[DeviceHealthOut]:
    newest = (select(func.max(EventRecord.id).label("id"))
              .where(EventRecord.type.in_(sorted(STATE_EVENTS)), scope.where(EventRecord.institution_id))
              .group_by(EventRecord.device_id, EventRecord.type).subquery())
    seen = (select(EventRecord.device_id, func.max(EventRecord.received_at).label("seen"))
            .where(scope.where(EventRecord.institution_id)).group_by(EventRecord.device_id).subquery())
    q = (select(Device, Institution.name, seen.c.seen)
         .outerjoin(Institution, Institution.id == Device.institution_id)
         .outerjoin(seen, seen.c.device_id == Device.id)
         .where(scope.where(Device.institution_id))
         .order_by(Device.institution_id, Device.room, Device.id))
    if institution is not None:
        q = q.where(Device.institution_id == institution)
    with system.sessions() as s:
        devices = s.execute(q).all()
        states = s.execute(select(EventRecord.device_id, EventRecord.type, EventRecord.state)
                           .where(EventRecord.id.in_(select(newest.c.id)))).all()
    active: dict[str, set[DeviceProblem]] = {}
    for device_id, type_, state in states:
        if state == EventState.ACTIVE.value:
            active.setdefault(device_id, set()).add(STATE_EVENTS[type_])
    readings = _readings_seen(system)
    now = datetime.now(UTC)
    out = []
    for d, name, event_seen in devices:
        reading = readings.get(d.id)
        candidates = [x for x in (event_seen, datetime.fromtimestamp(reading, UTC) if reading else None) if x]
        last = max(candidates) if candidates else None
        limit = _silent_limit(system, d.profile)
        problems = set(active.get(d.id, set()))
        if last is None or (now - last).total_seconds() > limit:
            problems.add(DeviceProblem.SILENT)
        if d.verification != Verification.VERIFIED:
            problems.add(DeviceProblem.UNVERIFIED)
        out.append(DeviceHealthOut(
            device_id=d.id, name=d.name or "", institution_id=d.institution_id, institution=name or "",
            room=d.room or "", profile=d.profile or "", last_seen=last, silent_limit_s=limit,
            verification=d.verification, problems=[p.value for p in DeviceProblem if p in problems]))
    return out


def _silent_limit(system: System, profile_name: str | None) -> int:
    profile = system.profiles.by_name.get(profile_name or "")
    interval = profile.spec.heartbeat_interval_s if profile is not None else None
    return int(interval * system.settings.offline_factor) if interval else UNKNOWN_HEARTBEAT_S


def _readings_seen(system: System) -> dict[str, float]:
    """device -> newest reading (epoch s) in the telemetry store; empty when it cannot be read now."""
    try:
        return telemetry_seen(system.settings)
    except Exception as exc:  # the telemetry store down: events still tell who was heard from
        log.warning("device health: telemetry store unreadable (%s); using events only", exc.__class__.__name__)
        return {}
