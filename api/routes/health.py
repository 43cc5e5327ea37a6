"""/readyz, /healthz and /metrics: for orchestrators and monitoring, no login."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from api.deps import System

router = APIRouter(tags=["health"])


@router.get("/readyz")
def readyz(system: System, response: Response) -> dict[str, object]:
    """200 only while every ingest session and the alarm lane hold their subscriptions: a message
    published now is either received or queued for this gateway by the broker."""
    parts = system.readiness()
    ready = all(parts.values())
    if not ready:
        response.status_code = 503
    return {"status": "ready" if ready else "not ready", "subscribed": parts}


@router.get("/healthz")
def healthz(system: System, response: Response) -> dict[str, object]:
    """503 when anything is degraded: an ingest session (or a worker) or the alarm lane not holding its
    subscriptions, a contact's channel failing, an alarm nobody could be routed to. For monitoring; an
    orchestrator's readiness check is /readyz (a dead police webhook is no reason to restart us)."""
    workers = system.workers
    lane = system.alarm_lane
    parts = system.readiness()
    body: dict[str, object] = {
        "profiles": len(system.profiles.by_name),
        "devices": len(system.registry),
        "subscribed": parts,
        "alarm_lane": None if lane is None else {"connected": lane.source.connected.is_set(),
                                                 "topics": len(lane.held())},
    }
    if workers is None:
        body["mqtt_connected"] = system.mqtt.connected.is_set()
    else:  # ingest runs in worker processes (their own sessions)
        body["workers"] = {"expected": len(workers.procs), "alive": workers.alive(), "restarts": workers.restarts}
    ok = all(parts.values())
    if system.alerting is not None:  # failing contacts, alarms nobody could be routed to
        body["alerting"] = alerting = system.alerting.health.report()
        ok = ok and alerting["status"] == "ok"
    body["status"] = "ok" if ok else "degraded"
    if not ok:
        response.status_code = 503
    return body


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(system: System) -> str:
    return system.metrics.render(system.workers.snapshots() if system.workers is not None else ())
