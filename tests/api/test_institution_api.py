"""The institution page's API (readings, institution summary, drill windows, device tests) and the
acknowledge link's dispatch form: scoping of every route, drill-window validation, Beijing input and UTC
storage, chart buckets in UTC, limits from the threshold rules. Real SQLite telemetry store and InfluxDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import select

from alerting.ack_links import make_token
from alerting.models import DrillWindow, Incident, TimelineEntry
from alerting.thresholds import (
    DEFAULT_THRESHOLDS,
    InfluxWindowSource,
    SqliteWindowSource,
    latest_values,
    load_thresholds,
    series,
)
from anxin.model import Reading
from api.models import AuditEntry
from gateway.sinks.influx import InfluxSink
from gateway.sinks.sqlite_sink import SqliteSink
from tests.servers.influxdb import InfluxServer
from tests.support.world import World, api_world

SHANGHAI = ZoneInfo("Asia/Shanghai")


def beijing(dt: datetime) -> str:
    """How a person types a time into the drill form: Beijing wall clock, no zone."""
    return dt.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M")


def drill_body(institution: str, start: datetime, hours: float = 1.0, note: str = "演练") -> dict[str, Any]:
    return {"institution_id": institution, "starts_at": beijing(start),
            "ends_at": beijing(start + timedelta(hours=hours)), "note": note}


def write(world: World, readings: list[Reading]) -> None:
    sink = SqliteSink(world.system.settings.sqlite_telemetry_path)
    try:
        sink.write(readings)
    finally:
        sink.close()


def test_every_route_is_scoped(tmp_path: Path) -> None:
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    with api_world(tmp_path) as world:
        write(world, [Reading("air-a", "co2", 700, datetime.now(UTC), "inst-a")])
        b_window = world.client("director-b").post("/api/v1/drill-windows", json=drill_body("inst-b", tomorrow))
        assert b_window.status_code == 201, b_window.text
        b_id = b_window.json()["id"]
        a_window = world.client("director-a").post("/api/v1/drill-windows", json=drill_body("inst-a", tomorrow))
        assert a_window.status_code == 201
        a_id = a_window.json()["id"]

        # Anonymous: 401 from the API, the login page for the console.
        anon = world.anonymous()
        for method, url, body in [("GET", "/api/v1/institution-summary/inst-a", None),
                                  ("GET", "/api/v1/readings/air-a?metric=co2", None),
                                  ("GET", "/api/v1/drill-windows?institution=inst-a", None),
                                  ("POST", "/api/v1/drill-windows", drill_body("inst-a", tomorrow)),
                                  ("POST", f"/api/v1/drill-windows/{a_id}/end", None),
                                  ("POST", "/api/v1/device-tests", {"device_id": "sos-a"})]:
            assert anon.request(method, url, json=body).status_code == 401, url
        page = anon.get("/console/institution", headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"].startswith("/login")

        # Users of A (director, contractor): B's rows do not exist for them, exactly like missing ones.
        for name in ("director-a", "contractor-a"):
            http = world.client(name)
            assert http.get("/api/v1/institution-summary/inst-a").status_code == 200
            assert http.get("/api/v1/readings/air-a?metric=co2").json()[0]["points"]
            for missing, other in [("/api/v1/institution-summary/nowhere", "/api/v1/institution-summary/inst-b"),
                                   ("/api/v1/readings/nothing?metric=co2",
                                    "/api/v1/readings/sos-b?metric=battery"),
                                   ("/api/v1/drill-windows?institution=nowhere",
                                    "/api/v1/drill-windows?institution=inst-b")]:
                assert http.get(other).status_code == 404, (name, other)
                assert http.get(missing).status_code == 404
            assert http.get("/console/institution?institution=inst-b").status_code == 404
            assert http.post("/api/v1/drill-windows", json=drill_body("inst-b", tomorrow)).status_code == 404
            assert http.post(f"/api/v1/drill-windows/{b_id}/end").status_code == 404
            assert http.post("/api/v1/device-tests", json={"device_id": "sos-b"}).status_code == 404
            assert [w["id"] for w in http.get("/api/v1/drill-windows?institution=inst-a").json()] == [a_id]
            assert [w["id"] for w in http.get("/api/v1/drill-windows").json()] == [a_id]  # the scope's
        # A director's page is their own institution; a contractor's is chosen among theirs.
        assert "data-institution=\"inst-a\"" in world.client("director-a").get("/console/institution").text

        # The commission reads its districts and changes nothing.
        commission = world.client("commission-siming")
        summary = commission.get("/api/v1/institution-summary/inst-a")
        assert summary.status_code == 200 and summary.json()["can_act"] is False
        assert commission.get("/api/v1/institution-summary/inst-b").status_code == 404
        assert commission.post("/api/v1/drill-windows", json=drill_body("inst-a", tomorrow)).status_code == 403
        assert commission.post(f"/api/v1/drill-windows/{a_id}/end").status_code == 403
        assert commission.post("/api/v1/device-tests", json={"device_id": "sos-a"}).status_code == 403
        assert "drill-form" not in commission.get("/console/institution?institution=inst-a").text

        # The administrator sees both and chooses.
        admin = world.client("admin")
        assert admin.get("/api/v1/institution-summary/inst-b").status_code == 200
        chooser = admin.get("/console/institution").text
        assert "inst-a" in chooser and "inst-b" in chooser and 'data-institution=""' in chooser

        # A console session's change needs its CSRF token.
        http = world.client("director-a")
        token = http.headers.pop("X-CSRF-Token")
        try:
            assert http.post("/api/v1/drill-windows", json=drill_body("inst-a", tomorrow)).status_code == 403
        finally:
            http.headers["X-CSRF-Token"] = token
        with world.system.sessions() as s:
            assert len(list(s.scalars(select(DrillWindow)))) == 2  # nothing refused was stored
            audited = {(a.actor, a.resource, a.resource_id) for a in s.scalars(select(AuditEntry))}
        assert {("director-a", "drill_window", str(a_id)), ("director-b", "drill_window", str(b_id))} <= audited


def test_drill_windows_are_checked_entered_in_beijing_time_and_stored_in_utc(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with api_world(tmp_path) as world:
        http = world.client("director-a")

        def post(body: dict[str, Any]) -> Any:
            return http.post("/api/v1/drill-windows", json=body)

        start = (now + timedelta(days=2)).replace(second=0, microsecond=0)
        for body, why in [(drill_body("inst-a", start, hours=-1), "结束时间须晚于开始时间"),
                          (drill_body("inst-a", start, hours=0), "结束时间须晚于开始时间"),
                          (drill_body("inst-a", now - timedelta(hours=2)), "开始时间已过"),
                          (drill_body("inst-a", start, hours=4.25), "最长 4 小时"),
                          (drill_body("inst-a", now + timedelta(days=120)), "90 天")]:
            r = post(body)
            assert r.status_code == 422 and why in r.json()["detail"], (body, r.text)
        assert post({**drill_body("inst-a", start), "note": "x" * 501}).status_code == 422
        assert post({**drill_body("inst-a", start), "starts_at": "not a time"}).status_code == 422

        r = post(drill_body("inst-a", start, hours=4, note="  秋季消防演练 "))
        assert r.status_code == 201, r.text
        made = r.json()
        assert made["state"] == "upcoming" and made["note"] == "秋季消防演练"
        assert made["starts_at"] == start.strftime("%Y-%m-%dT%H:%M:00Z")  # Beijing in, UTC out
        # A time with a zone is taken as given.
        zoned = post({"institution_id": "inst-a", "starts_at": (start + timedelta(hours=5)).isoformat(),
                      "ends_at": (start + timedelta(hours=6)).isoformat()})
        assert zoned.status_code == 201 and zoned.json()["starts_at"] == (
            start + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:00Z")
        with world.system.sessions() as s:
            stored = s.get(DrillWindow, made["id"])
            assert stored is not None
            assert (stored.starts_at, stored.ends_at) == (start, start + timedelta(hours=4))

        # Starting now (a minute typed in the past is fine): the window is active and routes drills now.
        active = post(drill_body("inst-a", now - timedelta(minutes=1), hours=1))
        assert active.status_code == 201 and active.json()["state"] == "active"
        summary = http.get("/api/v1/institution-summary/inst-a").json()
        assert summary["active_drill"]["id"] == active.json()["id"]

        # Ending early: an active window ends now; an upcoming one is cancelled (gone); ended twice: 409/404.
        ended = http.post(f"/api/v1/drill-windows/{active.json()['id']}/end")
        assert ended.status_code == 200 and ended.json()["state"] == "past"
        assert http.post(f"/api/v1/drill-windows/{active.json()['id']}/end").status_code == 409
        cancelled = http.post(f"/api/v1/drill-windows/{made['id']}/end")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        assert http.post(f"/api/v1/drill-windows/{made['id']}/end").status_code == 404
        assert http.get("/api/v1/institution-summary/inst-a").json()["active_drill"] is None

        # A device test opens a short window for the device's institution (and says how many receive it).
        test = http.post("/api/v1/device-tests", json={"device_id": "sos-a"})
        assert test.status_code == 201, test.text
        window = test.json()["window"]
        length = datetime.fromisoformat(window["ends_at"]) - datetime.fromisoformat(window["starts_at"])
        assert window["state"] == "active" and timedelta(minutes=9) < length <= timedelta(minutes=10)
        assert test.json()["drill_receivers"] == 0 and "sos-a" in window["note"]
        assert http.post("/api/v1/device-tests", json={"device_id": "sos-a", "minutes": 120}).status_code == 422


def test_readings_are_utc_buckets_with_the_rules_limits(tmp_path: Path) -> None:
    rules = yaml.safe_load(DEFAULT_THRESHOLDS.read_text(encoding="utf-8"))
    rules["overrides"] = [{"rule": "co2", "institution": "inst-a", "room": "一班", "above": 800, "clear_below": 750}]
    strict = tmp_path / "thresholds.yaml"
    strict.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    now = datetime.now(UTC)
    # 00:30 Beijing today is 16:30 UTC the day before: the bucket is labelled in UTC, shown in Beijing.
    midnight = now.astimezone(SHANGHAI).replace(hour=0, minute=30, second=0, microsecond=0)
    at = midnight if midnight < now - timedelta(minutes=10) else midnight - timedelta(days=1)
    with api_world(tmp_path, thresholds=strict) as world:
        write(world, [Reading("air-a", "co2", 700, at + timedelta(seconds=10), "inst-a"),
                      Reading("air-a", "co2", 900, at + timedelta(seconds=70), "inst-a"),  # same 5-min bucket
                      Reading("air-a", "co2", 1200, now - timedelta(hours=30), "inst-a"),  # only in 48 h
                      Reading("air-a", "co2", 850, now - timedelta(seconds=5), "inst-a"),
                      Reading("air-a", "battery", 64, now - timedelta(seconds=5), "inst-a"),
                      Reading("air-a", "temperature", 23.5, now - timedelta(seconds=5), "inst-a"),
                      Reading("air-a", "pm25", 30, now - timedelta(days=8), "inst-a"),  # too old for "now"
                      Reading("sos-a", "battery", 41, now - timedelta(days=10), "inst-a")])  # seen, long ago
        http = world.client("director-a")
        [day] = http.get("/api/v1/readings/air-a?metric=co2&hours=24").json()
        assert day["unit"] == "ppm" and day["bucket_s"] == 300
        utc_bucket = datetime.fromtimestamp(int(at.timestamp()) // 300 * 300, UTC)
        points = {datetime.fromisoformat(p["at"]): p["value"] for p in day["points"]}
        assert points[utc_bucket] == 800  # the mean of 700 and 900
        assert utc_bucket.astimezone(SHANGHAI).strftime("%H:%M") == "00:30"
        assert all(p["at"].endswith("Z") for p in day["points"]) and 1200 not in points.values()
        assert 1200 in [p["value"] for p in http.get(
            "/api/v1/readings/air-a?metric=co2&hours=48").json()[0]["points"]]
        # The limit is the rule's with this room's override: one source of truth, the rules file.
        assert day["limit"] == {"rule": "co2", "above": 800, "clear_below": 750, "statistic": "min",
                                "window_s": load_thresholds(strict).rules[0].window_s}
        [hcho] = http.get("/api/v1/readings/air-a?metric=hcho").json()
        rule = next(r for r in load_thresholds(strict).rules if r.metric == "hcho")
        assert hcho["points"] == [] and hcho["limit"]["above"] == rule.above
        assert http.get("/api/v1/readings/air-a?metric=humidity").json()[0]["limit"] is None  # no rule
        assert http.get("/api/v1/readings/air-a?metric=nonsense").status_code == 422
        assert http.get("/api/v1/readings/air-a?metric=co2&hours=169").status_code == 422
        assert http.get("/api/v1/readings/air-a?metric=co2&hours=0").status_code == 422
        assert http.get("/api/v1/readings/sos-b?metric=nonsense").status_code == 404  # the scope answers first
        every = http.get("/api/v1/readings/air-a?hours=24").json()  # each metric reported in the range
        assert [s["metric"] for s in every] == ["battery", "co2", "temperature"]  # pm25 is 8 days old

        summary = http.get("/api/v1/institution-summary/inst-a").json()
        env = {e["metric"]: e for e in summary["environment"]}
        assert env["co2"]["value"] == 850 and env["co2"]["above_limit"] is True  # 850 > the room's 800
        assert env["temperature"]["limit"] is None and env["temperature"]["above_limit"] is False
        assert "battery" not in env and "pm25" not in env
        sos = next(d for d in summary["devices"] if d["id"] == "sos-a")
        assert sos["battery"] == 41 and sos["status"] == "quiet"
        assert abs(datetime.fromisoformat(sos["last_seen"]) - (now - timedelta(days=10))) < timedelta(seconds=1)
        air = next(d for d in summary["devices"] if d["id"] == "air-a")
        assert air["battery"] == 64 and air["status"] == "online" and air["verification"] == "unverified"
        assert abs(datetime.fromisoformat(air["last_seen"]) - now) < timedelta(seconds=10)
        assert next(d for d in summary["devices"] if d["id"] == "smoke-a")["status"] == "never"
        world.add_event("air-a", "inst-a", "device.offline")
        summary = http.get("/api/v1/institution-summary/inst-a").json()
        assert next(d for d in summary["devices"] if d["id"] == "air-a")["status"] == "offline"


def test_influxdb_and_sqlite_answer_the_same_series(tmp_path: Path, influx: InfluxServer) -> None:
    """The chart's read side over both telemetry stores: same buckets (UTC), same means, same newest."""
    now = datetime.now(UTC)
    readings = [Reading("air-a", "co2", 600 + n, now - timedelta(minutes=7 * n), "inst-a") for n in range(40)]
    readings.append(Reading("air-b", "co2", 999, now, "inst-b"))
    influx_sink = InfluxSink(influx.url, "anxin", spool_dir=tmp_path / "spool")
    influx_sink.write(readings)
    influx_sink.close()
    sqlite_sink = SqliteSink(tmp_path / "telemetry.db")
    sqlite_sink.write(readings)
    sqlite_sink.close()
    influx_source = InfluxWindowSource(influx.url, "anxin")
    sqlite_source = SqliteWindowSource(tmp_path / "telemetry.db")
    from_influx = series(influx_source, "air-a", "co2", 6 * 3600, 1800)
    from_sqlite = series(sqlite_source, "air-a", "co2", 6 * 3600, 1800)
    assert len(from_sqlite) >= 9 and [t for t, _ in from_influx] == [t for t, _ in from_sqlite]
    assert [v for _, v in from_influx] == pytest.approx([v for _, v in from_sqlite])
    assert all(t % 1800 == 0 for t, _ in from_influx)
    latest, also = latest_values(influx_source, ["air-a"], 3600), latest_values(sqlite_source, ["air-a"], 3600)
    assert set(latest) == set(also) == {("air-a", "co2")}  # air-b not asked for
    (at, value), (also_at, also_value) = latest[("air-a", "co2")], also[("air-a", "co2")]
    assert value == also_value == 600 and abs(at - also_at) < 1 and abs(at - now.timestamp()) < 1


def test_the_link_page_dispatches_with_the_guards_name_and_a_get_changes_nothing(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        incident_id = world.open_incident("sos-a", "inst-a")
        token = make_token(world.system.settings.alerting_secret.encode(), incident_id, "contractor-a")
        url = f"/ack/{token}"
        http = world.anonymous()

        def actions() -> list[tuple[str, str, dict[str, Any]]]:
            with world.system.sessions() as s:
                return [(e.action, e.actor, e.detail) for e in s.scalars(select(TimelineEntry).where(
                    TimelineEntry.incident_id == incident_id).order_by(TimelineEntry.id))]

        before = actions()
        page = http.get(url)
        assert page.status_code == 200 and actions() == before
        assert 'action="../ack/dispatch"' in page.text and 'name="guard"' in page.text
        for header, value in [("cache-control", "no-store"), ("referrer-policy", "no-referrer"),
                              ("x-robots-tag", "noindex, nofollow")]:
            assert page.headers[header] == value
        assert "default-src 'none'" in page.headers["content-security-policy"]

        nameless = http.post("/ack/dispatch", data={"token": token, "guard": "   "})
        assert nameless.status_code == 400 and "保安姓名" in nameless.text and actions() == before
        assert http.post("/ack/dispatch", data={"token": token[:-2] + "xx", "guard": "王保安"}).status_code == 403
        done = http.post("/ack/dispatch", data={"token": token, "guard": "王 保安"})
        assert done.status_code == 200 and "已派 王 保安" in done.text
        dispatched = [a for a in actions() if a[0] == "dispatched"]
        assert [(a, actor) for a, actor, _ in dispatched] == [("dispatched", "contact:contractor-a")]
        assert dispatched[0][2].get("guard") == "王 保安"  # AlertingEngine.transition(..., guard=)
        with world.system.sessions() as s:
            incident = s.get(Incident, incident_id)
            assert incident is not None and incident.dispatched_guard == "王 保安"
        again = http.get(url).text
        assert "思明安保值班" in again and "王 保安" in again and 'name="guard"' not in again
        assert "已由他人" in http.post("/ack/dispatch", data={"token": token, "guard": "李保安"}).text
