"""Quarterly drill record: drills held per institution in a quarter (Asia/Shanghai calendar), counted
from the drill windows and the drill incidents they produced; at least one per quarter is required."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from alerting.commissioning import unverified_counts
from alerting.models import DrillWindow, Incident
from anxin.db import Institution

SHANGHAI = ZoneInfo("Asia/Shanghai")
REQUIRED_PER_QUARTER = 1
QUARTER = re.compile(r"^(\d{4})Q([1-4])$")


@dataclass(frozen=True, slots=True)
class DrillRecord:
    institution_id: str
    institution: str
    quarter: str  # "2026Q4"
    drills: int  # drill windows held in the quarter
    drill_alarms: int  # alarms raised inside them (incidents flagged drill)
    unverified_devices: int = 0  # registered devices whose test press has not been seen end to end (now)

    @property
    def compliant(self) -> bool:
        return self.drills >= REQUIRED_PER_QUARTER


def quarter_bounds(year: int, quarter: int) -> tuple[datetime, datetime]:
    if quarter not in (1, 2, 3, 4):
        raise ValueError("quarter is 1..4")
    start = datetime(year, 3 * quarter - 2, 1, tzinfo=SHANGHAI)
    end = datetime(year + (quarter == 4), 1 if quarter == 4 else 3 * quarter + 1, 1, tzinfo=SHANGHAI)
    return start, end


def parse_quarter(text: str) -> tuple[int, int]:
    """Parses "2026Q4" (any case, spaces around) as (2026, 4); ValueError with a line people can read."""
    m = QUARTER.match(text.strip().upper())
    if m is None:
        raise ValueError(f"季度格式如 2026Q4 / a quarter looks like 2026Q4 (Q1-Q4), not {text!r}")
    return int(m.group(1)), int(m.group(2))


def current_quarter(now: datetime | None = None) -> tuple[int, int]:
    """The quarter ``now`` (default: this moment) falls in, on the Asia/Shanghai calendar."""
    local = (now or datetime.now(UTC)).astimezone(SHANGHAI)
    return local.year, (local.month - 1) // 3 + 1


def drill_records(sessions: sessionmaker[Session], year: int, quarter: int,
                  institutions: Collection[str] | None = None) -> list[DrillRecord]:
    """Every institution's record, or only those of ``institutions`` (a viewer's scope) when given."""
    with sessions() as s:
        return drill_records_in(s, year, quarter, institutions)


def drill_records_in(s: Session, year: int, quarter: int,
                     institutions: Collection[str] | None = None) -> list[DrillRecord]:
    start, end = quarter_bounds(year, quarter)
    only = sorted(institutions) if institutions is not None else None
    q_windows = (select(DrillWindow.institution_id, func.count())
                 .where(DrillWindow.starts_at >= start, DrillWindow.starts_at < end)
                 .group_by(DrillWindow.institution_id))
    q_alarms = (select(Incident.institution_id, func.count())
                .where(Incident.drill.is_(True), Incident.opened_at >= start, Incident.opened_at < end)
                .group_by(Incident.institution_id))
    q_institutions = select(Institution.id, Institution.name).order_by(Institution.id)
    if only is not None:
        q_windows = q_windows.where(DrillWindow.institution_id.in_(only))
        q_alarms = q_alarms.where(Incident.institution_id.in_(only))
        q_institutions = q_institutions.where(Institution.id.in_(only))
    windows = dict(s.execute(q_windows).all())
    alarms = dict(s.execute(q_alarms).all())
    unverified = unverified_counts(s)
    found = s.execute(q_institutions).all()
    return [DrillRecord(i.id, i.name, f"{year}Q{quarter}", int(windows.get(i.id, 0)), int(alarms.get(i.id, 0)),
                        unverified.get(i.id, 0))
            for i in found]
