"""Quarterly drill record: drills held per institution in a quarter (Asia/Shanghai calendar), counted
from the drill windows and the drill incidents they produced; at least one per quarter is required."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from alerting.commissioning import unverified_counts
from alerting.models import DrillWindow, Incident
from anxin.db import Institution

SHANGHAI = ZoneInfo("Asia/Shanghai")
REQUIRED_PER_QUARTER = 1


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


def drill_records(sessions: sessionmaker[Session], year: int, quarter: int) -> list[DrillRecord]:
    start, end = quarter_bounds(year, quarter)
    with sessions() as s:
        windows = dict(s.execute(select(DrillWindow.institution_id, func.count())
                                 .where(DrillWindow.starts_at >= start, DrillWindow.starts_at < end)
                                 .group_by(DrillWindow.institution_id)).all())
        alarms = dict(s.execute(select(Incident.institution_id, func.count())
                                .where(Incident.drill.is_(True), Incident.opened_at >= start, Incident.opened_at < end)
                                .group_by(Incident.institution_id)).all())
        unverified = unverified_counts(s)
        institutions = s.execute(select(Institution.id, Institution.name).order_by(Institution.id)).all()
    return [DrillRecord(i.id, i.name, f"{year}Q{quarter}", int(windows.get(i.id, 0)), int(alarms.get(i.id, 0)),
                        unverified.get(i.id, 0))
            for i in institutions]
