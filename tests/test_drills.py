"""The quarterly drill record counts drill windows and drill alarms per institution."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerting.drills import current_quarter, drill_records, parse_quarter, quarter_bounds
from alerting.models import Incident
from anxin.db import init_db, make_engine
from program.registry_file import import_registry


def test_quarter_bounds_are_in_shanghai_time() -> None:
    start, end = quarter_bounds(2026, 4)
    assert start.astimezone(UTC) == datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        quarter_bounds(2026, 5)


def test_drill_record(tmp_path: Path) -> None:
    sessions = init_db(make_engine(f"sqlite:///{tmp_path}/a.db"))
    import_registry(sessions, {
        "institutions": [{"id": "a", "name": "小太阳"}, {"id": "b", "name": "贝贝"}],
        "drills": [{"institution": "a", "starts_at": "2026-10-15T10:00:00", "ends_at": "2026-10-15T11:00:00"},
                   {"institution": "a", "starts_at": "2026-07-01T10:00:00", "ends_at": "2026-07-01T11:00:00"},
                   # 2026-10-01 07:00 Shanghai is still 2026-09-30 in UTC: it belongs to Q4
                   {"institution": "b", "starts_at": "2026-10-01T07:00:00", "ends_at": "2026-10-01T08:00:00"}],
    })
    with sessions.begin() as s:
        s.add(Incident(institution_id="a", device_id="smoke", type="alarm.smoke", severity="critical",
                       state="resolved", drill=True, opened_at=datetime(2026, 10, 15, 2, 10, tzinfo=UTC)))
    records = {r.institution_id: r for r in drill_records(sessions, 2026, 4)}
    assert (records["a"].drills, records["a"].drill_alarms, records["a"].compliant) == (1, 1, True)
    assert (records["b"].drills, records["b"].compliant) == (1, True)
    q3 = {r.institution_id: r for r in drill_records(sessions, 2026, 3)}
    assert q3["a"].drills == 1 and not q3["b"].compliant


def test_a_quarter_is_read_in_one_place_and_malformed_ones_say_what_was_expected() -> None:
    assert parse_quarter(" 2026q4 ") == (2026, 4)
    for bad in ("2026Q5", "2026Q0", "26Q1", "2026-Q1", ""):
        with pytest.raises(ValueError, match="2026Q4"):
            parse_quarter(bad)
    # 2026-09-30 16:30 UTC is already 1 October in Shanghai: the fourth quarter
    assert current_quarter(datetime(2026, 9, 30, 16, 30, tzinfo=UTC)) == (2026, 4)
    assert current_quarter(datetime(2026, 9, 30, 15, 30, tzinfo=UTC)) == (2026, 3)


def test_drill_records_limited_to_institutions_change_nothing_else(tmp_path: Path) -> None:
    sessions = init_db(make_engine(f"sqlite:///{tmp_path}/a.db"))
    import_registry(sessions, {
        "institutions": [{"id": "a", "name": "小太阳"}, {"id": "b", "name": "贝贝"}],
        "drills": [{"institution": "a", "starts_at": "2026-10-15T10:00:00", "ends_at": "2026-10-15T11:00:00"},
                   {"institution": "b", "starts_at": "2026-11-15T10:00:00", "ends_at": "2026-11-15T11:00:00"},
                   {"institution": "b", "starts_at": "2026-11-16T10:00:00", "ends_at": "2026-11-16T11:00:00"}],
    })
    everyone = {r.institution_id: r for r in drill_records(sessions, 2026, 4)}
    assert [r.institution_id for r in drill_records(sessions, 2026, 4, ["b"])] == ["b"]
    assert drill_records(sessions, 2026, 4, ["b"]) == [everyone["b"]]
    assert drill_records(sessions, 2026, 4, []) == []
