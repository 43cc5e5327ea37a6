"""The health commission's overview (卫健委监管总览): for a quarter on the Asia/Shanghai calendar, by district and
institution, the incidents open now, the alarms of the quarter by type and closure code, the median time to
acknowledge, the drills held, and the devices offline or unverified now. Read-only; every figure is counted
only over the caller's scope (commission: its districts; contractor and institution: their institutions;
admin: everything), and an institution outside the scope is 404 like one that does not exist.

Real alarms are the incidents opened in the quarter outside drill windows; drill alarms are counted apart
and never enter the real alarms' counts or the median."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from alerting.drills import current_quarter, drill_records_in, parse_quarter, quarter_bounds
from alerting.models import Incident
from anxin.db import Device, EventRecord, Institution
from anxin.model import LIFE_SAFETY, EventState, EventType
from api.deps import CurrentUser, SessionDep
from api.models import District
from api.routes.incidents import OPEN_STATES, incident_rows
from api.schemas import DistrictFigures, Figures, InstitutionFigures, InstitutionQuarter, Overview
from api.scope import Scope

NOT_CLOSED = "open"  # the closure "code" of a real alarm not resolved yet
INCIDENTS_SHOWN = 1000  # an institution's drill-down lists at most this many incidents of the quarter (newest)
LIFE_SAFETY_TYPES = frozenset(t.value for t in LIFE_SAFETY)

QuarterParam = Annotated[str | None, Query(max_length=16, description="e.g. 2026Q4; default: the current quarter "
                                                                      "(Asia/Shanghai)")]
InstitutionId = Annotated[str, Path(max_length=64, description="institution id")]

router = APIRouter(prefix="/api/v1/overview", tags=["overview"])


@router.get("")
def get_overview(s: SessionDep, user: CurrentUser, quarter: QuarterParam = None) -> Overview:
    """Figures by district and institution within the caller's scope."""
    return overview(s, user.scope, *quarter_of(quarter))


@router.get("/institutions/{institution_id}")
def get_institution(institution_id: InstitutionId, s: SessionDep, user: CurrentUser,
                    quarter: QuarterParam = None) -> InstitutionQuarter:
    """One institution's figures and its incidents opened in the quarter (newest first, drills flagged)."""
    year, q = quarter_of(quarter)
    figures = institution_figures(s, user.scope, institution_id, year, q)
    return InstitutionQuarter(quarter=quarter_label(year, q), institution=figures,
                              incidents=incident_rows(s, quarter_incidents(s, institution_id, year, q)))


def quarter_of(text: str | None) -> tuple[int, int]:
    """The quarter asked for (422 with one readable line when malformed), or the current one."""
    if text is None or not text.strip():
        return current_quarter()
    try:
        return parse_quarter(text)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@dataclass(slots=True)
class Tally:
    """Figures being counted (one institution's, or a sum); ``ack_s`` keeps every acknowledge time so a
    district's median is the median of its alarms, not a median of medians."""

    institutions: int = 0
    open_incidents: int = 0
    open_life_safety: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    by_closure: Counter[str] = field(default_factory=Counter)
    drill_alarms: int = 0
    ack_s: list[float] = field(default_factory=list)
    drills: int = 0
    drills_compliant: int = 0
    devices: int = 0
    devices_offline: int = 0
    devices_unverified: int = 0

    def add(self, other: Tally) -> None:
        for name in ("institutions", "open_incidents", "open_life_safety", "drill_alarms", "drills",
                     "drills_compliant", "devices", "devices_offline", "devices_unverified"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_type.update(other.by_type)
        self.by_closure.update(other.by_closure)
        self.ack_s.extend(other.ack_s)

    def figures(self) -> dict[str, Any]:
        return {
            "institutions": self.institutions, "open_incidents": self.open_incidents,
            "open_life_safety": self.open_life_safety, "alarms": sum(self.by_type.values()),
            "alarms_by_type": dict(sorted(self.by_type.items(), key=lambda kv: (-kv[1], kv[0]))),
            "alarms_by_closure": dict(sorted(self.by_closure.items(), key=lambda kv: (-kv[1], kv[0]))),
            "drill_alarms": self.drill_alarms, "acknowledged": len(self.ack_s),
            "median_ack_s": round(statistics.median(self.ack_s), 1) if self.ack_s else None,
            "drills": self.drills, "drills_compliant": self.drills_compliant, "devices": self.devices,
            "devices_offline": self.devices_offline, "devices_unverified": self.devices_unverified}


def overview(s: Session, scope: Scope, year: int, quarter: int) -> Overview:
    institutions = list(s.scalars(select(Institution).where(scope.where(Institution.id))
                                  .order_by(Institution.district, Institution.id)))
    tallies = tally(s, scope, [i.id for i in institutions], year, quarter)
    names_en = dict(s.execute(select(District.name, District.name_en)).all())
    # The commission sees its districts even while one has no institution yet; admin every district.
    shown = {i.district for i in institutions} | set(scope.districts or ())
    if scope.everything:
        shown |= set(names_en)
    total = Tally()
    districts = []
    for name in sorted(shown, key=lambda d: (d == "", d)):  # institutions of no district last
        members = [i for i in institutions if i.district == name]
        sub = Tally()
        for i in members:
            sub.add(tallies[i.id])
        total.add(sub)
        districts.append(DistrictFigures(name=name, name_en=names_en.get(name, ""), **sub.figures(),
                                         members=[_institution(i, tallies[i.id]) for i in members]))
    start, end = quarter_bounds(year, quarter)
    return Overview(quarter=quarter_label(year, quarter), starts_at=start, ends_at=end,
                    totals=Figures(**total.figures()), districts=districts)


def institution_figures(s: Session, scope: Scope, institution_id: str, year: int, quarter: int) -> InstitutionFigures:
    """One institution's figures; 404 when it does not exist or lies outside the scope (the same answer)."""
    # (PostgreSQL refuses a NUL in a string: such an id cannot exist, so it is not found, never a 500)
    readable = scope.allows(institution_id) and "\x00" not in institution_id
    institution = s.get(Institution, institution_id) if readable else None
    if institution is None:
        raise HTTPException(404, f"没有机构 / no institution {institution_id}")
    only = Scope(scope.role, frozenset([institution.id]))
    return _institution(institution, tally(s, only, [institution.id], year, quarter)[institution.id])


def quarter_incidents(s: Session, institution_id: str, year: int, quarter: int) -> list[Incident]:
    """The institution's incidents opened in the quarter, newest first (call after checking the scope)."""
    start, end = quarter_bounds(year, quarter)
    return list(s.scalars(select(Incident).where(Incident.institution_id == institution_id,
                                                 Incident.opened_at >= start, Incident.opened_at < end)
                          .order_by(Incident.id.desc()).limit(INCIDENTS_SHOWN)))


def _institution(i: Institution, t: Tally) -> InstitutionFigures:
    return InstitutionFigures(id=i.id, name=i.name, name_en=i.name_en, district=i.district, **t.figures())


def tally(s: Session, scope: Scope, ids: list[str], year: int, quarter: int) -> dict[str, Tally]:
    """Each institution's figures; ``ids`` are the institutions of ``scope`` to count. (Every query goes
    through the scope: for an administrator that is no condition at all, a plain scan, far cheaper than
    looking up every institution's rows by index; rows of no institution are then skipped here.)"""
    tallies = {i: Tally(institutions=1) for i in ids}
    if not ids:
        return tallies
    start, end = quarter_bounds(year, quarter)
    mine = scope.where(Incident.institution_id)
    in_quarter = (Incident.opened_at >= start, Incident.opened_at < end)
    for inst, type_, n in s.execute(select(Incident.institution_id, Incident.type, func.count())
                                    .where(mine, Incident.state.in_(OPEN_STATES), Incident.drill.is_(False))
                                    .group_by(Incident.institution_id, Incident.type)):
        if (t := tallies.get(str(inst))) is None:
            continue
        t.open_incidents += n
        t.open_life_safety += n if type_ in LIFE_SAFETY_TYPES else 0
    for inst, type_, code, n in s.execute(select(Incident.institution_id, Incident.type, Incident.closure_code,
                                                 func.count())
                                          .where(mine, *in_quarter, Incident.drill.is_(False))
                                          .group_by(Incident.institution_id, Incident.type,
                                                    Incident.closure_code)):
        if (t := tallies.get(str(inst))) is None:
            continue
        t.by_type[type_] += n
        t.by_closure[code or NOT_CLOSED] += n
    ack_s = seconds_between(s, Incident.opened_at, Incident.acknowledged_at)
    for inst, seconds in s.execute(select(Incident.institution_id, ack_s)
                                   .where(mine, *in_quarter, Incident.drill.is_(False),
                                          Incident.acknowledged_at.is_not(None))):
        if seconds is not None and (t := tallies.get(str(inst))) is not None:
            t.ack_s.append(max(0.0, float(seconds)))
    for r in drill_records_in(s, year, quarter, None if scope.everything else ids):
        if r.institution_id not in tallies:
            continue
        t = tallies[r.institution_id]
        t.drills, t.drill_alarms, t.devices_unverified = r.drills, r.drill_alarms, r.unverified_devices
        t.drills_compliant = int(r.compliant)
    for inst, n in s.execute(select(Device.institution_id, func.count()).where(scope.where(Device.institution_id))
                             .group_by(Device.institution_id)):
        if (t := tallies.get(str(inst))) is not None:
            t.devices = n
    for inst, n in offline_counts(s, scope).items():
        if (t := tallies.get(inst)) is not None:
            t.devices_offline = n
    return tallies


def seconds_between(s: Session, start: InstrumentedAttribute[Any],
                    end: InstrumentedAttribute[Any]) -> ColumnElement[Any]:
    """``end - start`` in seconds, computed by the database: a quarter's worth of alarms is then a column of
    numbers, not two datetimes per row to convert in Python (the cost of the overview on a busy site)."""
    if s.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end - start)


def offline_counts(s: Session, scope: Scope) -> dict[str, int]:
    """institution -> its devices whose latest availability event says offline (an online event, or the
    offline state clearing, brings a device back)."""
    availability = (EventType.OFFLINE.value, EventType.ONLINE.value)
    latest = (select(func.max(EventRecord.id))
              .where(scope.where(EventRecord.institution_id), EventRecord.type.in_(availability))
              .group_by(EventRecord.device_id))
    q = (select(EventRecord.institution_id, func.count())
         .where(EventRecord.id.in_(latest), EventRecord.type == EventType.OFFLINE.value,
                EventRecord.state == EventState.ACTIVE.value)
         .group_by(EventRecord.institution_id))
    return {str(inst): int(n) for inst, n in s.execute(q)}


def quarter_label(year: int, quarter: int) -> str:
    return f"{year}Q{quarter}"


def shift_quarter(year: int, quarter: int, by: int) -> tuple[int, int]:
    n = year * 4 + quarter - 1 + by
    return n // 4, n % 4 + 1


def is_future(year: int, quarter: int, now: datetime | None = None) -> bool:
    return (year, quarter) > current_quarter(now)
