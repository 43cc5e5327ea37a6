"""The live feed: each viewer gets the changes of their own scope and nothing else; a viewer whose
connection dropped resumes from its last event id and misses nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.browser import live_console
from tests.support.world import World, api_world


def read_feed(base: str, http: Any, until: Any, *, last_event_id: str | None = None, after: str | None = None,
              timeout: float = 30.0) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, event, data) of the feed's messages until ``until(messages)`` holds (or the timeout)."""
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in http.cookies.items())}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    url = f"{base}/api/v1/feed" + (f"?after={after}" if after else "")
    out: list[tuple[str, str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", url, headers=headers, timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        ident = event = ""
        for line in r.iter_lines():
            if line.startswith("id: "):
                ident = line[4:]
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((ident, event, json.loads(line[6:])))
                if until(out):
                    return out
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"feed ended or timed out with {out}")


def incident_ids(messages: list[tuple[str, str, dict[str, Any]]]) -> set[int]:
    return {d["incident"]["id"] for _, e, d in messages if e == "incident"}


def test_feed_shows_only_the_viewers_scope_and_resumes_after_a_drop(tmp_path: Path) -> None:
    with api_world(tmp_path) as world, live_console(world) as base:
        world_: World = world
        b = world_.open_incident("sos-b", "inst-b")  # first: the feed is in order, B's opening comes before A's
        a = world_.open_incident("sos-a", "inst-a")
        everything = "0-0"
        director_a = world_.client("director-a")
        seen = read_feed(base, director_a, lambda m: a in incident_ids(m), after=everything)
        assert b not in incident_ids(seen)
        assert {d["incident"]["institution_id"] for _, e, d in seen if e == "incident"} == {"inst-a"}
        admin = world_.client("admin")
        assert {a, b} <= incident_ids(read_feed(base, admin, lambda m: {a, b} <= incident_ids(m), after=everything))
        # the director's connection drops; meanwhile A's incident is acknowledged and a new one opens
        last_id = seen[-1][0]
        assert director_a.post(f"/api/v1/incidents/{a}/transition", json={"to": "acknowledged"}).status_code == 200
        c = world_.open_incident("smoke-a", "inst-a", "alarm.smoke")
        world_.open_incident("smoke-b", "inst-b", "alarm.smoke")
        resumed = read_feed(base, director_a,
                            lambda m: c in incident_ids(m) and any(d["entry"]["action"] == "acknowledged"
                                                                   for _, e, d in m if e == "incident"),
                            last_event_id=last_id)
        assert incident_ids(resumed) <= {a, c}  # nothing of inst-b, before or after the drop
        # a cursor that is not one is refused, not ignored
        r = httpx.get(f"{base}/api/v1/feed?after=nonsense",
                      headers={"Cookie": f"anxin_session={director_a.cookies['anxin_session']}"})
        assert r.status_code == 422
        assert httpx.get(f"{base}/api/v1/feed").status_code == 401


def test_an_entry_committed_after_a_newer_one_still_reaches_the_feed(tmp_path: Path, postgres: Any) -> None:
    """PostgreSQL hands out ids when a row is inserted and shows the row when it commits: id N+1 can be
    visible while N is not yet. The feed looks for such gaps again, so N is sent once it commits."""
    from alerting.models import TimelineEntry
    from api.models import Role
    from api.routes.feed import Gaps, news
    from api.scope import Scope

    with api_world(tmp_path, database_url=postgres.new_database("feedgaps")) as world:
        a = world.open_incident("sos-a", "inst-a")
        sessions = world.system.sessions
        scope = Scope(Role.CONTRACTOR, frozenset({"inst-a"}))
        with sessions() as s:
            _, cursor = news(s, scope, (0, 0))
        gaps = Gaps()
        slow = sessions()  # a transaction that took its id first and commits last
        early = TimelineEntry(incident_id=a, action="note", actor="slow", detail={})
        slow.add(early)
        slow.flush()
        with sessions.begin() as fast:
            late = TimelineEntry(incident_id=a, action="note", actor="fast", detail={})
            fast.add(late)
        assert early.id < late.id
        with sessions() as s:
            first, cursor = news(s, scope, cursor, gaps)
        assert [d["entry"]["id"] for n, d in first if n == "incident"] == [late.id]
        assert cursor[0] == late.id  # the cursor is past the uncommitted row ...
        slow.commit()
        slow.close()
        with sessions() as s:
            second, cursor = news(s, scope, cursor, gaps)
        assert [d["entry"]["id"] for n, d in second if n == "incident"] == [early.id]  # ... which still arrives
        with sessions() as s:
            third, _ = news(s, scope, cursor, gaps)
        assert third == []  # and only once
