"""The contractor's board API, incident notifications, dispatch with a guard, notes and device health
(h-board), against the real app and database: what each user sees is limited to their scope (404 outside
it), the commission cannot act (403), anonymous callers get 401 (a page: a redirect to the login)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, update

from alerting.models import TimelineEntry
from anxin.db import Device, Verification
from api.models import Role
from api.routes.feed import cursor_now, news, parse_cursor
from api.scope import Scope
from tests.harness import wait_for
from tests.servers.webhook import WebhookReceiver
from tests.support.world import World, api_world

HTML = {"Accept": "text/html"}


def board(world: World, user: str) -> list[dict[str, Any]]:
    r = world.client(user).get("/api/v1/board")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cursor"].count("-") == 1
    incidents: list[dict[str, Any]] = body["incidents"]
    return incidents


def test_board_puts_life_safety_first_then_oldest_and_says_who_was_reached(tmp_path: Path,
                                                                           webhooks: WebhookReceiver) -> None:
    with api_world(tmp_path, webhook_url=webhooks.url) as world:
        battery = world.open_incident("smoke-a", "inst-a", "fault.battery_low")  # older, not life-safety
        panic = world.open_incident("sos-a", "inst-a", "alarm.panic")
        smoke_b = world.open_incident("smoke-b", "inst-b", "alarm.smoke")

        def police_reached() -> bool:
            rows = {i["id"]: i for i in board(world, "contractor-a")}
            return any(n["contact_id"] == "police-siming" and n["delivered"] for n in rows[panic]["notifications"])

        wait_for(police_reached, what="the police's delivery on the board")
        rows = board(world, "contractor-a")
        assert [i["id"] for i in rows] == [panic, battery]  # inst-b's alarm is not there; panic first
        first = rows[0]
        assert (first["type_zh"], first["type_en"], first["life_safety"]) == ("一键报警", "Panic alarm", True)
        assert (first["institution"], first["room"], first["device_id"]) == ("小太阳托育园", "前台", "sos-a")
        police = next(n for n in first["notifications"] if n["contact_id"] == "police-siming")
        assert (police["name"], police["role"], police["status"], police["channels"]) == (
            "思明公安", "police", "delivered", ["webhook"])
        assert police["delivered_at"] is not None and police["attempts"] >= 1
        assert first["last_entry_id"] > 0 and rows[1]["life_safety"] is False

        assert [i["id"] for i in board(world, "admin")] == [panic, smoke_b, battery]  # both alarms, by age
        assert [i["id"] for i in board(world, "director-b")] == [smoke_b]
        assert [i["id"] for i in board(world, "commission-siming")] == [panic, battery]
        assert [i["id"] for i in world.client("admin").get("/api/v1/board?institution=inst-b").json()["incidents"]] \
            == [smoke_b]

        # a delivery that fails shows as not delivered, with the reason
        webhooks.failing["/contractor-a"] = (float("inf"), 400)
        gas = world.open_incident("smoke-a", "inst-a", "alarm.gas")
        wait_for(lambda: any(n["contact_id"] == "contractor-a" and n["status"] == "permanent" for n in
                             world.client("contractor-a").get(f"/api/v1/incidents/{gas}/notifications").json()),
                 what="the refused delivery")
        [mine] = [n for n in world.client("contractor-a").get(f"/api/v1/incidents/{gas}/notifications").json()
                  if n["contact_id"] == "contractor-a"]
        assert mine["delivered"] is False and mine["last_error"]

        # resolved incidents leave the board
        r = world.client("contractor-a").post(f"/api/v1/incidents/{battery}/transition",
                                              json={"to": "resolved", "closure_code": "real", "note": "换电池"})
        assert r.status_code == 200, r.text
        assert battery not in [i["id"] for i in board(world, "contractor-a")]


def test_every_new_endpoint_is_scoped(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        a = world.open_incident("sos-a", "inst-a")
        b = world.open_incident("sos-b", "inst-b")
        anon = world.anonymous()
        guard = {"to": "dispatched", "guard": "王师傅"}
        for user in ("contractor-a", "director-a"):
            http = world.client(user)
            assert http.get(f"/api/v1/incidents/{b}/notifications").status_code == 404
            assert http.post(f"/api/v1/incidents/{b}/transition", json=guard).status_code == 404
            assert http.post(f"/api/v1/incidents/{b}/notes", json={"text": "x"}).status_code == 404
            assert http.get(f"/console/incidents/{b}", headers=HTML).status_code == 404
            assert b not in [i["id"] for i in board(world, user)]
            devices = http.get("/api/v1/device-health").json()
            assert {d["institution_id"] for d in devices} == {"inst-a"}
            assert http.get("/api/v1/device-health?institution=inst-b").json() == []
            page = http.get("/console/devices?institution=inst-b", headers=HTML)
            assert page.status_code == 200 and "sos-b" not in page.text and "贝贝" not in page.text
        assert world.client("contractor-b").get(f"/api/v1/incidents/{b}/notifications").status_code == 200

        commission = world.client("commission-siming")
        assert commission.post(f"/api/v1/incidents/{a}/transition", json=guard).status_code == 403
        assert commission.post(f"/api/v1/incidents/{a}/notes", json={"text": "看一下"}).status_code == 403
        assert commission.get(f"/api/v1/incidents/{a}/notifications").status_code == 200
        page = commission.get(f"/console/incidents/{a}", headers=HTML)
        assert page.status_code == 200 and 'data-testid="read-only"' in page.text and 'id="actions"' not in page.text
        assert 'id="actions"' in world.client("contractor-a").get(f"/console/incidents/{a}", headers=HTML).text

        for path in ("/api/v1/board", f"/api/v1/incidents/{a}/notifications", "/api/v1/device-health"):
            assert anon.get(path).status_code == 401, path
        assert anon.post(f"/api/v1/incidents/{a}/transition", json=guard).status_code == 401
        assert anon.post(f"/api/v1/incidents/{a}/notes", json={"text": "x"}).status_code == 401
        for path in ("/console/board", f"/console/incidents/{a}", "/console/devices"):
            r = anon.get(path, headers=HTML)
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
        # a cookie session's change needs its CSRF token
        no_csrf = world.client("contractor-a")
        token = no_csrf.headers.pop("X-CSRF-Token")
        try:
            assert no_csrf.post(f"/api/v1/incidents/{a}/notes", json={"text": "x"}).status_code == 403
        finally:
            no_csrf.headers["X-CSRF-Token"] = token


def test_dispatch_names_the_guard_and_notes_go_on_the_timeline(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        a = world.open_incident("sos-a", "inst-a")
        http = world.client("contractor-a")
        assert http.post(f"/api/v1/incidents/{a}/transition",
                         json={"to": "acknowledged", "guard": "王师傅"}).status_code == 422  # only when dispatching
        assert http.post(f"/api/v1/incidents/{a}/transition", json={"to": "acknowledged"}).status_code == 200
        dispatched = http.post(f"/api/v1/incidents/{a}/transition",
                               json={"to": "dispatched", "guard": "王师傅", "note": "5 分钟到"})
        noted = http.post(f"/api/v1/incidents/{a}/notes", json={"text": "保安已到场 guard on site"})
        assert dispatched.status_code == 200 and dispatched.json()["state"] == "dispatched"
        assert noted.status_code == 200
        timeline = http.get(f"/api/v1/incidents/{a}").json()["timeline"]
        [step] = [e for e in timeline if e["action"] == "dispatched"]
        assert (step["actor"], step["detail"]["guard"]) == ("contractor-a", "王师傅")
        assert any("保安已到场" in str(e["detail"]) and e["actor"] == "contractor-a" for e in timeline)
        [row] = board(world, "contractor-a")
        assert row["guard"] == "王师傅"


def test_device_health_says_what_is_wrong(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        world.add_event("smoke-a", "inst-a", "fault.battery_low")
        world.add_event("sos-a", "inst-a", "fault.tamper")
        world.add_event("sos-a", "inst-a", "fault.tamper", state="clear")  # the newest state counts
        world.add_event("air-a", "inst-a", "device.offline")
        with world.system.sessions.begin() as s:
            s.execute(update(Device).where(Device.id == "sos-a").values(verification=Verification.VERIFIED))
        http = world.client("contractor-a")
        rows = {d["device_id"]: d for d in http.get("/api/v1/device-health").json()}
        assert set(rows) == {"sos-a", "smoke-a", "air-a"}
        # sos-a was heard from just now (its events); its profile's heartbeat is 4 h x 2.5
        assert rows["sos-a"]["problems"] == [] and rows["sos-a"]["silent_limit_s"] == 36000
        assert rows["sos-a"]["last_seen"] is not None
        assert rows["smoke-a"]["problems"] == ["battery_low", "unverified"]
        assert rows["air-a"]["problems"] == ["offline", "unverified"]
        assert [d["device_id"] for d in http.get("/api/v1/device-health?problem=battery_low").json()] == ["smoke-a"]
        assert http.get("/api/v1/device-health?problem=nonsense").status_code == 422
        admin = {d["device_id"]: d for d in world.client("admin").get("/api/v1/device-health").json()}
        assert admin["sos-b"]["problems"] == ["silent", "unverified"]  # never heard from
        assert admin["sos-b"]["last_seen"] is None
        page = http.get("/console/devices?problem=offline", headers=HTML)
        assert page.status_code == 200 and 'data-device="air-a"' in page.text and 'data-device="sos-a"' not in page.text


def test_the_feed_never_skips_an_entry_committed_while_it_reads(tmp_path: Path) -> None:
    """An entry committed between the feed's statements (each sees the newest commits) is sent on the next
    poll: the cursor never moves past a row the feed did not read. (Found by bench/console_latency.py:
    3 of 30 presses never reached the board.)"""
    with api_world(tmp_path) as world:
        a = world.open_incident("sos-a", "inst-a")
        system = world.system
        with system.sessions() as s:
            start = parse_cursor(cursor_now(s))
        assert start is not None
        injected: list[int] = []

        def commit_one_meanwhile(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if injected or "incident_timeline" not in statement or not statement.lstrip().upper().startswith("SELECT"):
                return
            injected.append(0)
            with system.sessions.begin() as w:  # another connection, committed before the feed's next statement
                entry = TimelineEntry(incident_id=a, action="note", actor="race", detail={})
                w.add(entry)
                w.flush()
                injected[0] = entry.id

        scope = Scope(Role.CONTRACTOR, frozenset({"inst-a"}))
        event.listen(system.engine, "after_cursor_execute", commit_one_meanwhile)
        try:
            with system.sessions() as s:
                first, cursor = news(s, scope, start)
        finally:
            event.remove(system.engine, "after_cursor_execute", commit_one_meanwhile)
        assert injected and injected[0] > 0
        with system.sessions() as s:
            second, _ = news(s, scope, cursor)
        sent = [data["entry"]["id"] for name, data in first + second if name == "incident"]
        assert injected[0] in sent
