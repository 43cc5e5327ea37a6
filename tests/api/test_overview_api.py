"""The health commission's overview: figures for a quarter by district and institution, counted from real
incidents (opened by the alerting engine, acknowledged and resolved through the API), drill windows and
device events; every figure limited to the caller's scope, and nothing to change.

The world: inst-a (思明区) has a panic acknowledged then resolved as real, a smoke alarm resolved as a false
alarm, a second panic still open, an air sensor gone offline (its incident open), the smoke detector gone
offline and back, and a drill alarm raised inside a drill window; inst-b (湖里区) has a panic resolved as a
false alarm, a smoke alarm open, its button offline, and a drill window with no alarm."""

from __future__ import annotations

import html
import json
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from secrets import token_hex
from typing import Any

import pytest
from sqlalchemy import func, select, update

from alerting.drills import current_quarter, quarter_bounds
from alerting.models import DrillWindow, Incident
from anxin.db import Device, Verification
from api.routes.overview import shift_quarter
from tests.support.overview_data import act, drill_window
from tests.support.world import World, api_world

YEAR, Q = current_quarter()
QUARTER = f"{YEAR}Q{Q}"
PREVIOUS = "{}Q{}".format(*shift_quarter(YEAR, Q, -1))


@dataclass
class Made:
    """Ids of what the scenario made, for the assertions."""

    real_a: list[int]
    drill_a: int
    real_b: list[int]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scenario(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Made]]:
    database: dict[str, Any] = {}
    if request.param == "postgresql":
        database["database_url"] = request.getfixturevalue("postgres").new_database(f"overview_{token_hex(4)}")
    # The heartbeat detector stays out (its first round is an hour away): the offline events below stand for
    # devices saying so themselves (LWT, availability), and its view of them is not what is tested here.
    with api_world(tmp_path_factory.mktemp("overview"), thresholds_interval_s=3600, **database) as world:
        now = datetime.now(UTC)
        panic1 = world.open_incident("sos-a", "inst-a", "alarm.panic")
        act(world, "contractor-a", panic1, "acknowledged")
        act(world, "contractor-a", panic1, "resolved", "real")
        smoke = world.open_incident("smoke-a", "inst-a", "alarm.smoke")
        act(world, "admin", smoke, "dispatched")  # dispatching acknowledges too
        act(world, "admin", smoke, "resolved", "false_alarm")
        panic2 = world.open_incident("sos-a", "inst-a", "alarm.panic")  # stays open: life-safety open
        air_off = world.open_incident("air-a", "inst-a", "device.offline")  # offline now
        smoke_off = world.open_incident("smoke-a", "inst-a", "device.offline")
        world.add_event("smoke-a", "inst-a", "device.offline", "clear")  # ... and back: online now
        # A drill: alarms inside the window go to drill receivers and are counted apart.
        window = drill_window(world, "inst-a", now - timedelta(minutes=1), now + timedelta(hours=1))
        drill = world.open_incident("smoke-a", "inst-a", "alarm.smoke")
        act(world, "contractor-a", drill, "acknowledged")
        with world.system.sessions.begin() as s:  # the drill is over
            s.execute(update(DrillWindow).where(DrillWindow.id == window).values(ends_at=datetime.now(UTC)))
        # Last quarter's drill (counted in that quarter only).
        last_start, _ = quarter_bounds(*shift_quarter(YEAR, Q, -1))
        drill_window(world, "inst-a", last_start + timedelta(days=3), last_start + timedelta(days=3, hours=1))

        panic_b = world.open_incident("sos-b", "inst-b", "alarm.panic")
        act(world, "contractor-b", panic_b, "acknowledged")
        act(world, "contractor-b", panic_b, "resolved", "false_alarm")
        smoke_b = world.open_incident("smoke-b", "inst-b", "alarm.smoke")
        off_b = world.open_incident("sos-b", "inst-b", "device.offline")
        drill_window(world, "inst-b", now - timedelta(hours=3), now - timedelta(hours=2))
        with world.system.sessions() as s:
            assert s.get(Incident, drill) is not None and s.get(Incident, drill).drill
            assert not any(s.get(Incident, i).drill for i in (panic1, smoke, panic2))
        yield world, Made([panic1, smoke, panic2, air_off, smoke_off], drill, [panic_b, smoke_b, off_b])


def ack_median(world: World, ids: list[int]) -> float | None:
    """The median time to acknowledge computed from the incident rows themselves."""
    with world.system.sessions() as s:
        rows = s.scalars(select(Incident).where(Incident.id.in_(ids))).all()
        times = [(i.acknowledged_at - i.opened_at).total_seconds() for i in rows if i.acknowledged_at]
    return statistics.median(times) if times else None


def near(figure: float | None, computed: float | None) -> bool:
    """The API rounds to 0.1 s (and the database subtracts in its own arithmetic)."""
    return figure is not None and computed is not None and abs(figure - computed) <= 0.051


def unverified(world: World, institution: str) -> int:
    with world.system.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Device).where(
            Device.institution_id == institution, Device.verification != Verification.VERIFIED)) or 0)


def test_figures_of_an_institution_are_counted_from_its_incidents(scenario: tuple[World, Made]) -> None:
    world, made = scenario
    r = world.client("admin").get("/api/v1/overview", params={"quarter": QUARTER})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["quarter"] == QUARTER
    start, end = quarter_bounds(YEAR, Q)
    assert datetime.fromisoformat(data["starts_at"]) == start and datetime.fromisoformat(data["ends_at"]) == end
    [a] = [m for d in data["districts"] for m in d["members"] if m["id"] == "inst-a"]
    assert a["district"] == "思明区" and a["name"] == "小太阳托育园"
    assert a["alarms"] == 5  # two panics, a smoke alarm, two offline devices; the drill alarm apart
    assert a["alarms_by_type"] == {"alarm.panic": 2, "device.offline": 2, "alarm.smoke": 1}
    assert a["alarms_by_closure"] == {"open": 3, "false_alarm": 1, "real": 1}
    assert a["drill_alarms"] == 1
    assert a["open_incidents"] == 3 and a["open_life_safety"] == 1  # panic2, air-a and smoke-a offline
    assert a["acknowledged"] == 2  # the drill's acknowledgement does not enter the median
    assert near(a["median_ack_s"], ack_median(world, made.real_a))
    assert a["drills"] == 1 and a["drills_compliant"] == 1
    assert a["devices"] == 3 and a["devices_offline"] == 1 and a["devices_unverified"] == unverified(world, "inst-a")
    assert a["devices_unverified"] > 0


def test_district_and_total_figures_add_up_and_medians_come_from_the_alarms(scenario: tuple[World, Made]) -> None:
    world, made = scenario
    data = world.client("admin").get("/api/v1/overview", params={"quarter": QUARTER}).json()
    districts = {d["name"]: d for d in data["districts"]}
    assert set(districts) == {"思明区", "湖里区"}
    assert districts["湖里区"]["name_en"] == "Huli"
    [b] = districts["湖里区"]["members"]
    assert (b["alarms"], b["alarms_by_closure"], b["open_life_safety"]) == (3, {"open": 2, "false_alarm": 1}, 1)
    assert (b["drills"], b["drill_alarms"], b["devices_offline"]) == (1, 0, 1)
    totals = data["totals"]
    assert totals["institutions"] == 2
    assert totals["alarms"] == 8 and totals["drill_alarms"] == 1 and totals["drills"] == 2
    assert totals["alarms_by_type"] == {"alarm.panic": 3, "device.offline": 3, "alarm.smoke": 2}
    assert totals["alarms_by_closure"] == {"open": 5, "false_alarm": 2, "real": 1}
    assert totals["open_incidents"] == 5 and totals["open_life_safety"] == 2 and totals["devices_offline"] == 2
    assert totals["acknowledged"] == 3
    assert near(totals["median_ack_s"], ack_median(world, made.real_a + made.real_b))  # not a median of medians
    assert totals["devices_unverified"] == unverified(world, "inst-a") + unverified(world, "inst-b")


def test_another_quarter_counts_its_own_alarms_and_drills(scenario: tuple[World, Made]) -> None:
    world, _ = scenario
    data = world.client("admin").get("/api/v1/overview", params={"quarter": PREVIOUS}).json()
    totals = data["totals"]
    assert (totals["alarms"], totals["drill_alarms"], totals["acknowledged"]) == (0, 0, 0)
    assert totals["median_ack_s"] is None and totals["alarms_by_closure"] == {}
    [a] = [m for d in data["districts"] for m in d["members"] if m["id"] == "inst-a"]
    assert a["drills"] == 1  # last quarter's drill window
    assert totals["drills_compliant"] == 1  # inst-b held none last quarter
    assert totals["open_incidents"] == 5  # open incidents are as of now, whatever the quarter
    default = world.client("admin").get("/api/v1/overview").json()
    assert default["quarter"] == QUARTER  # no quarter: the current one (Asia/Shanghai)


def test_a_malformed_quarter_is_one_clear_line(scenario: tuple[World, Made]) -> None:
    world, _ = scenario
    for bad in ("2026Q5", "Q4", "2026-10"):
        r = world.client("admin").get("/api/v1/overview", params={"quarter": bad})
        assert r.status_code == 422
        assert "2026Q4" in r.json()["detail"] and bad in r.json()["detail"]
    page = world.client("commission-siming").get("/console/overview", params={"quarter": "2026Q5"})
    assert page.status_code == 200 and "a quarter looks like 2026Q4" not in page.text  # zh-CN page
    assert "季度格式如 2026Q4" in page.text and f"{QUARTER}</span>" in page.text


def test_the_commission_sees_only_its_districts(scenario: tuple[World, Made]) -> None:
    world, made = scenario
    http = world.client("commission-siming")
    r = http.get("/api/v1/overview", params={"quarter": QUARTER})
    assert r.status_code == 200
    data = r.json()
    assert [d["name"] for d in data["districts"]] == ["思明区"]
    assert [m["id"] for m in data["districts"][0]["members"]] == ["inst-a"]
    assert "inst-b" not in r.text and "贝贝" not in r.text and "湖里" not in r.text
    admin = world.client("admin").get("/api/v1/overview", params={"quarter": QUARTER}).json()
    [a] = [m for d in admin["districts"] for m in d["members"] if m["id"] == "inst-a"]
    totals = data["totals"]
    for key in ("alarms", "alarms_by_type", "alarms_by_closure", "drill_alarms", "open_incidents", "median_ack_s",
                "drills", "devices", "devices_offline", "devices_unverified"):
        assert totals[key] == a[key], key  # the totals are inst-a's alone: nothing of inst-b leaks in
    detail = http.get("/api/v1/overview/institutions/inst-a", params={"quarter": QUARTER})
    assert detail.status_code == 200
    ids = [i["id"] for i in detail.json()["incidents"]]
    assert ids == sorted([*made.real_a, made.drill_a], reverse=True)  # the drill too, flagged
    assert [i["drill"] for i in detail.json()["incidents"] if i["id"] == made.drill_a] == [True]


@pytest.mark.parametrize("username", ["commission-siming", "contractor-a", "director-a"])
def test_an_institution_outside_the_scope_is_not_found(scenario: tuple[World, Made], username: str) -> None:
    world, made = scenario
    http = world.client(username)
    missing = http.get("/api/v1/overview/institutions/no-such-place")
    outside = http.get("/api/v1/overview/institutions/inst-b")
    assert outside.status_code == missing.status_code == 404
    assert outside.json()["detail"].replace("inst-b", "X") == missing.json()["detail"].replace("no-such-place", "X")
    page = http.get("/console/overview/institutions/inst-b", headers={"accept": "text/html"})
    assert page.status_code == 404 and "贝贝" not in page.text
    for incident in made.real_b:
        assert str(incident) not in re.findall(r"/console/incidents/(\d+)", page.text)
    mine = http.get("/api/v1/overview", params={"quarter": QUARTER}).json()
    assert {m["id"] for d in mine["districts"] for m in d["members"]} == {"inst-a"}


def test_contractor_b_sees_inst_b_and_admin_sees_both(scenario: tuple[World, Made]) -> None:
    world, _ = scenario
    b = world.client("contractor-b").get("/api/v1/overview", params={"quarter": QUARTER}).json()
    assert [(d["name"], [m["id"] for m in d["members"]]) for d in b["districts"]] == [("湖里区", ["inst-b"])]
    assert world.client("director-b").get("/api/v1/overview/institutions/inst-a").status_code == 404
    assert world.client("admin").get("/api/v1/overview/institutions/inst-b").status_code == 200
    assert world.client("admin").get("/api/v1/overview/institutions/inst%00b").status_code == 404  # not a 500


def test_anonymous_callers_are_refused(scenario: tuple[World, Made]) -> None:
    world, _ = scenario
    http = world.anonymous()
    for path in ("/api/v1/overview", "/api/v1/overview/institutions/inst-a"):
        assert http.get(path).status_code == 401
    for path in ("/console/overview", "/console/overview/institutions/inst-a"):
        r = http.get(path, headers={"accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/console/overview")


def test_the_commission_changes_nothing(scenario: tuple[World, Made]) -> None:
    world, made = scenario
    http = world.client("commission-siming")
    for path in ("/console/overview", "/console/overview/institutions/inst-a"):
        page = http.get(path, params={"quarter": QUARTER})
        assert page.status_code == 200
        forms = re.findall(r"<form\b[^>]*>", page.text)
        assert sorted(re.search(r'action="([^"]*)"', f).group(1) for f in forms) == ["/lang", "/logout"]  # type: ignore[union-attr]
        assert "<button" not in page.text.replace('<button type="submit" class="link"', "")
    for path in ("/api/v1/overview", "/api/v1/overview/institutions/inst-a"):
        assert http.post(path, json={}).status_code == 405  # nothing to POST here
    r = http.post(f"/api/v1/incidents/{made.real_a[2]}/transition", json={"to": "acknowledged"})
    assert r.status_code == 403
    with world.system.sessions() as s:
        assert s.get(Incident, made.real_a[2]).state == "triggered"


def test_the_overview_page_shows_the_figures_and_the_drill_down_the_timelines(scenario: tuple[World, Made]) -> None:
    world, made = scenario
    http = world.client("commission-siming")
    page = http.get("/console/overview", params={"quarter": QUARTER}).text
    assert "小太阳托育园" in page and "/console/overview/institutions/inst-a?quarter=" + QUARTER in page
    assert 'data-testid="total-alarms">5<' in page and 'data-testid="total-drills">1<' in page
    assert "/static/vendor/echarts/echarts.min.js" in page and 'id="chart-types"' in page
    chart = json.loads(html.unescape(re.search(r'data-chart="([^"]*)"', page).group(1)))  # type: ignore[union-attr]
    # named in the page's language, with their codes (the colours follow the code)
    assert ["alarm.panic", "一键报警", 2] in chart["types"] and ["false_alarm", "误报", 1] in chart["closures"]
    assert chart["institutions"]["names"] == ["小太阳托育园"] and chart["institutions"]["alarms"] == [5]
    empty = http.get("/console/overview", params={"quarter": PREVIOUS}).text
    assert 'data-testid="total-median">—<' in empty  # nothing acknowledged that quarter
    drill_down = http.get("/console/overview/institutions/inst-a", params={"quarter": QUARTER}).text
    for incident in [*made.real_a, made.drill_a]:
        assert f'href="/console/incidents/{incident}"' in drill_down
    assert "false_alarm 已处理 / handled" in drill_down and "contractor-a" in drill_down  # timelines inline
    assert "误报" in drill_down and "演练" in drill_down
    english = http.get("/console/overview/institutions/inst-a", params={"quarter": QUARTER, "lang": "en"}).text
    assert "Little Sun Nursery" in english and "False alarm" in english
