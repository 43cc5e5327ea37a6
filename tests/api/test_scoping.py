"""Scoping, route by route: this test walks every route of the app, so a new route is checked the day
it is added (and fails here until it is classified).

For each route, with the path filled in with institution B's rows:
- anonymous callers get 401 (API) or are sent to the login page (console pages);
- a user of institution A (its director, its contractor) gets 404 or 403, never B's row, and no list
  they can read mentions anything of B;
- the commission can change nothing (403 on every POST/PUT/PATCH/DELETE);
- B's own director reads the same path (so the 404 above is the scope, not a missing row)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy import select
from starlette.routing import Mount

from anxin.db import DeadLetter
from api.models import ApiKey, User
from tests.support.world import World, api_world

# Open to everyone by design: health and metrics for monitoring, platform pushes (their own token), the
# login form, the language switch, the acknowledge link (the signed token is the credential), the docs.
PUBLIC = {
    ("GET", "/readyz"), ("GET", "/healthz"), ("GET", "/metrics"), ("POST", "/ingest/{profile}"),
    ("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("POST", "/lang"),
    ("GET", "/ack/{token}"), ("POST", "/ack"), ("GET", "/docs"), ("GET", "/openapi.json"),
    ("GET", "/docs/oauth2-redirect"), ("GET", "/demo/inbox"), ("POST", "/demo/inbox/{receiver}"),
    ("POST", "/logout"),  # ends the caller's own session only (tests/api/test_auth.py)
    ("POST", "/ack/dispatch"),  # the acknowledge link's second form (token is the credential)
}
# Streams that never end: only the anonymous check here; their scoping is tested in tests/api/test_feed.py.
STREAMS = {("GET", "/api/v1/feed")}
# Only administrators; everyone else 403 (or 404).
ADMIN_ONLY_PREFIXES = ("/api/v1/admin", "/console/admin", "/api/v1/users", "/api/v1/contacts", "/api/v1/audit",
                       "/api/v1/dead-letters", "/api/v1/districts", "/api/v1/contractors", "/api/v1/policies",
                       "/api/v1/routes")
# Strings that belong to institution B only: none may appear in what A's users can read.
B_MARKS = ("inst-b", "sos-b", "smoke-b", "贝贝托育中心", "ct-b", "湖里安保", "staff-b", "police-huli")
A_USERS = ("director-a", "contractor-a")
# A valid body for routes that change things: the refusal must come from the scope, not from validation.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/incidents/{incident_id}/transition"): {"to": "acknowledged"},
    ("POST", "/api/v1/drill-windows"): {"institution_id": "inst-b", "starts_at": "2099-01-01T10:00",
                                        "ends_at": "2099-01-01T11:00"},
    ("POST", "/api/v1/device-tests"): {"device_id": "sos-b"},
    ("POST", "/api/v1/incidents/{incident_id}/notes"): {"text": "note"},
}
CHANGES = ("POST", "PUT", "PATCH", "DELETE")


def b_rows(world: World) -> dict[str, Any]:
    """Values for path parameters, by parameter name, naming rows of institution B."""
    incident = world.open_incident("sos-b", "inst-b")
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    window = world.client("director-b").post("/api/v1/drill-windows", json={  # h-inst
        "institution_id": "inst-b", "starts_at": tomorrow.isoformat(),
        "ends_at": (tomorrow + timedelta(hours=1)).isoformat()})
    assert window.status_code == 201, window.text
    world.api_key("director-b")
    with world.system.sessions.begin() as s:  # admin-only rows: a dead letter, B's director's API key
        letter = DeadLetter(received_at=datetime.now(UTC), source="mqtt:zigbee2mqtt/sos-b", payload=b"{",
                            reason="malformed JSON")
        s.add(letter)
        s.flush()
        key_id = s.scalar(select(ApiKey.id).join(User, User.id == ApiKey.user_id)
                          .where(User.username == "director-b"))
        letter_id = letter.id
    return {"window_id": window.json()["id"], "name": "湖里区", "username": "director-b", "key_id": key_id,
            "dead_letter_id": letter_id,
            "incident_id": incident, "institution_id": "inst-b", "institution": "inst-b", "device_id": "sos-b",
            "device": "sos-b", "contact_id": "staff-b", "contractor_id": "ct-b", "id": incident}


def routes(world: World) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pending = list(world.app.routes)
    while pending:
        r = pending.pop(0)
        included = getattr(r, "original_router", None)  # FastAPI >= 0.16x keeps included routers whole
        if included is not None:
            pending.extend(included.routes)  # our routers carry their prefix themselves; included without one
        elif isinstance(r, APIRoute):
            out += [(m, r.path) for m in sorted((r.methods or set()) - {"HEAD"})]
        elif not isinstance(r, Mount):  # /static is a mount of files; docs routes are plain Routes
            for m in sorted(getattr(r, "methods", None) or {"GET"}):
                if m != "HEAD":
                    out.append((m, getattr(r, "path", "")))
    return out


def fill(path: str, values: dict[str, Any]) -> str | None:
    missing = [p for p in re.findall(r"{(\w+)(?::\w+)?}", path) if p not in values]
    if missing:
        return None
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: str(values[m.group(1)]), path)


def test_every_route_is_scoped(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        values = b_rows(world)
        world.open_incident("sos-a", "inst-a")
        unknown, leaks = [], []
        for method, path in routes(world):
            if (method, path) in PUBLIC:
                continue
            url = fill(path, values)
            if url is None:
                unknown.append(f"{method} {path}: no B row for its path parameters (add one to b_rows)")
                continue
            page = not path.startswith("/api/")
            anonymous = world.anonymous().request(method, url, json={}, headers={"Accept": "text/html"} if page else {})
            expected = 303 if page else 401
            if anonymous.status_code != expected:
                leaks.append(f"{method} {path}: anonymous got {anonymous.status_code}, expected {expected}")
            if (method, path) in STREAMS:
                continue
            admin_only = path.startswith(ADMIN_ONLY_PREFIXES)
            for username in A_USERS + (("commission-siming",) if method in CHANGES else ()):
                r = world.client(username).request(method, url, json=BODIES.get((method, path), {}))
                if method in CHANGES or admin_only or "{" in path:
                    if r.status_code not in (403, 404):
                        leaks.append(f"{method} {path} as {username}: {r.status_code} (expected 403/404)")
                elif r.status_code >= 400:
                    leaks.append(f"{method} {path} as {username}: {r.status_code} for a list it may read")
                # whole marks only: "sos-b" is not in the profile name "zigbee2mqtt-sos-button"; a refusal
                # may name what the caller asked for (it is in the URL), nothing else
                asked = url if r.status_code >= 400 else ""
                found = [m for m in B_MARKS if m not in asked
                         and re.search(rf"(?<![A-Za-z0-9_-]){re.escape(m)}(?![A-Za-z0-9_-])", r.text)]
                if found:
                    leaks.append(f"{method} {path} as {username}: shows {found}")
            if method == "GET" and "{" in path and not admin_only:
                own = world.client("director-b").get(url)
                if own.status_code != 200:
                    leaks.append(f"GET {path} as director-b (B's own row): {own.status_code}")
        assert not unknown, unknown
        assert not leaks, "\n".join(leaks)
