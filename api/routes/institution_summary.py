"""One institution at a glance for its staff (本园): devices and their state, the rooms' environment now
against the rule limits, open and recent incidents, drill windows. Scoped: outside the scope is 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from alerting.commissioning import device_rows
from alerting.models import DrillWindow, Incident
from alerting.thresholds import latest_values
from anxin.db import Device, EventRecord
from anxin.model import METRIC_UNITS, EventState, EventType
from api.deps import CurrentUser, System
from api.editing import IdPath
from api.environment import ENV_METRICS, device_kind, limit_for, telemetry, thresholds
from api.routes.drill_windows import drill_receivers, scoped_institution, window_out
from api.routes.incidents import OPEN_STATES, incident_rows
from api.schemas import DeviceStateOut, EnvValueOut, InstitutionSummary
from api.scope import Scope

LOOKBACK_S = 90 * 86400  # last seen: as far back as the commissioning listing looks
NOW_S = 7 * 86400  # the environment "now": the newest reading of the last week
RECENT = 20
# Silent this long without an offline event (a profile without heartbeat, or the rules not run): not "online".
QUIET = timedelta(hours=24)

router = APIRouter(prefix="/api/v1/institution-summary", tags=["institution"])


@router.get("/{institution_id}")
async def summary(institution_id: IdPath, system: System,
                  user: CurrentUser) -> InstitutionSummary:
    return await run_in_threadpool(build_summary, system, user.scope, institution_id)


def build_summary(system: System, scope: Scope, institution_id: str) -> InstitutionSummary:
    now = datetime.now(UTC)
    source = telemetry(system)
    with system.sessions() as s:
        inst = scoped_institution(s, scope, institution_id)
        devices = {d.id: d for d in s.scalars(select(Device).where(Device.institution_id == inst.id))}
        offline = _offline(s, list(devices))
        receivers = drill_receivers(s, inst)
        open_q = (select(Incident).where(scope.where(Incident.institution_id), Incident.institution_id == inst.id,
                                         Incident.state.in_(OPEN_STATES)).order_by(Incident.id.desc()))
        past_q = (select(Incident).where(scope.where(Incident.institution_id), Incident.institution_id == inst.id,
                                         Incident.state.not_in(OPEN_STATES))
                  .order_by(Incident.id.desc()).limit(RECENT))
        open_rows = incident_rows(s, list(s.scalars(open_q)))
        past_rows = incident_rows(s, list(s.scalars(past_q)))
        windows = [window_out(w, now) for w in s.scalars(
            select(DrillWindow).where(DrillWindow.institution_id == inst.id,
                                      DrillWindow.ends_at > now - timedelta(days=90))
            .order_by(DrillWindow.starts_at.desc()).limit(RECENT))]
        # as the alerting engine decides whether an alarm is a drill (its _in_drill)
        active = s.scalars(select(DrillWindow).where(DrillWindow.institution_id == inst.id,
                                                     DrillWindow.starts_at <= now, DrillWindow.ends_at > now)
                           .order_by(DrillWindow.ends_at.desc()).limit(1)).first()
        active_out = window_out(active, now) if active is not None else None
        name, name_en, district = inst.name, inst.name_en, inst.district
    values = latest_values(source, list(devices), LOOKBACK_S)
    seen: dict[str, float] = {}
    for (device_id, _), (at, _) in values.items():
        seen[device_id] = max(at, seen.get(device_id, 0.0))
    rows = device_rows(system.sessions, institution=institution_id, readings_seen=seen)
    recent = now.timestamp() - NOW_S
    config = thresholds(system)
    states: list[DeviceStateOut] = []
    environment: list[EnvValueOut] = []
    for r in rows:
        device = devices.get(r.device_id)
        if device is None:  # registered between the two reads
            continue
        kind = device_kind(system, r.profile)
        status = ("offline" if r.device_id in offline else "never" if r.last_seen is None
                  else "quiet" if r.last_seen < now - QUIET else "online")
        battery = values.get((r.device_id, "battery"))
        states.append(DeviceStateOut(id=r.device_id, name=device.name, room=r.room, profile=r.profile, kind=kind,
                                     status=status, last_seen=r.last_seen,
                                     battery=battery[1] if battery else None, verification=r.verification.value,
                                     verified_at=r.verified_at, verified_by=r.verified_by))
        for metric in ENV_METRICS:
            found = values.get((r.device_id, metric))
            if found is None or found[0] < recent:
                continue
            limit = limit_for(config, metric, kind, device)
            environment.append(EnvValueOut(device_id=r.device_id, room=r.room, metric=metric,
                                           unit=METRIC_UNITS[metric], value=round(found[1], 4),
                                           at=datetime.fromtimestamp(found[0], UTC), limit=limit,
                                           above_limit=limit is not None and found[1] > limit.above))
    return InstitutionSummary(id=institution_id, name=name, name_en=name_en, district=district, can_act=scope.can_act,
                              drill_receivers=receivers, active_drill=active_out, devices=states,
                              environment=environment, open_incidents=open_rows, recent_incidents=past_rows,
                              drill_windows=windows)


def _offline(s: Session, device_ids: list[str]) -> set[str]:
    """Devices whose newest ``device.offline`` event is active (the heartbeat rule or the device said so)."""
    if not device_ids:
        return set()
    newest = (select(func.max(EventRecord.id))
              .where(EventRecord.device_id.in_(device_ids), EventRecord.type == EventType.OFFLINE.value)
              .group_by(EventRecord.device_id))
    q = select(EventRecord.device_id).where(EventRecord.id.in_(newest), EventRecord.state == EventState.ACTIVE.value)
    return set(s.scalars(q))
