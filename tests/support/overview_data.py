"""Making the commission overview's data the way it happens: incidents opened by the alerting engine, moved
through the API by the people who handle them, and drill windows as the registry stores them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alerting.models import DrillWindow
from tests.support.world import World


def act(world: World, username: str, incident_id: int, to: str, closure: str | None = None) -> None:
    """``username`` moves the incident through POST /api/v1/incidents/{id}/transition (resolving with a note)."""
    body: dict[str, Any] = {"to": to}
    if closure:
        body |= {"closure_code": closure, "note": f"{closure} 已处理 / handled"}
    r = world.client(username).post(f"/api/v1/incidents/{incident_id}/transition", json=body)
    assert r.status_code == 200, r.text


def drill_window(world: World, institution: str, starts: datetime, ends: datetime) -> int:
    with world.system.sessions.begin() as s:
        w = DrillWindow(institution_id=institution, starts_at=starts, ends_at=ends, note="test")
        s.add(w)
        s.flush()
        return int(w.id)
