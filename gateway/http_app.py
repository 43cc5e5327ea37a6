"""HTTP side of the gateway: platform pushes (CTWing, OceanConnect, vendor hosts), /metrics, /healthz.

A push is answered 200 only once what it carried is durable, so a platform that retries on failure
never loses a message; bad payloads get 422 with the reason and are dead-lettered.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections import deque

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from gateway.ack_page import ack_router
from gateway.body_limit import BodyLimit
from gateway.incidents_api import incidents_router
from gateway.pipeline import Duplicate, Rejected
from gateway.service import Gateway

DURABLE_TIMEOUT_S = 10.0

log = logging.getLogger(__name__)


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="Anxin gateway", version="0.1.0")
    app.include_router(ingest_router(gateway))
    app.include_router(incidents_router(gateway))
    app.include_router(ack_router(gateway))
    app.add_middleware(BodyLimit, max_bytes=gateway.settings.http_max_body_bytes)

    @app.get("/readyz")
    def readyz(response: Response) -> dict[str, object]:
        """200 only while every ingest session and the alarm lane hold their subscriptions: a message
        published now is either received or queued for this gateway by the broker."""
        parts = gateway.readiness()
        ready = all(parts.values())
        if not ready:
            response.status_code = 503
        return {"status": "ready" if ready else "not ready", "subscribed": parts}

    @app.get("/healthz")
    def healthz(response: Response) -> dict[str, object]:
        """503 when anything is degraded: an ingest session (or a worker) or the alarm lane not holding its
        subscriptions, a contact's channel failing, an alarm nobody could be routed to. For monitoring; an
        orchestrator's readiness check is /readyz (a dead police webhook is no reason to restart us)."""
        workers = gateway.workers
        lane = gateway.alarm_lane
        parts = gateway.readiness()
        body: dict[str, object] = {
            "profiles": len(gateway.profiles.by_name),
            "devices": len(gateway.registry),
            "subscribed": parts,
            "alarm_lane": None if lane is None else {"connected": lane.source.connected.is_set(),
                                                     "topics": len(lane.held())},
        }
        if workers is None:
            body["mqtt_connected"] = gateway.mqtt.connected.is_set()
        else:  # ingest runs in worker processes (their own sessions)
            body["workers"] = {"expected": len(workers.procs), "alive": workers.alive(), "restarts": workers.restarts}
        ok = all(parts.values())
        if gateway.alerting is not None:  # failing contacts, alarms nobody could be routed to
            body["alerting"] = alerting = gateway.alerting.health.report()
            ok = ok and alerting["status"] == "ok"
        body["status"] = "ok" if ok else "degraded"
        if not ok:
            response.status_code = 503
        return body

    if gateway.settings.demo_inbox:
        inbox: deque[dict[str, object]] = deque(maxlen=200)

        @app.post("/demo/inbox/{receiver}")
        async def demo_receive(receiver: str, request: Request) -> dict[str, str]:
            try:
                note = await request.json()
            except ValueError:
                note = None
            if not isinstance(note, dict):
                raise HTTPException(422, "expected a JSON object")
            inbox.appendleft({"receiver": receiver, **note})
            log.warning("📣 %s received: %s", receiver, note.get("title"))
            return {"errcode": "0"}

        @app.get("/demo/inbox")
        def demo_inbox() -> list[dict[str, object]]:
            return list(inbox)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return gateway.metrics.render(gateway.workers.snapshots() if gateway.workers is not None else ())

    return app


def ingest_router(gateway: Gateway) -> APIRouter:
    router = APIRouter()
    tokens = [t.encode() for t in gateway.settings.ingest_tokens]

    def authorized(request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else request.query_params.get("token", "")
        return bool(given) and any(hmac.compare_digest(given.encode(), t) for t in tokens)

    @router.post("/ingest/{profile}")
    async def ingest(profile: str, request: Request) -> dict[str, object]:
        if not authorized(request):
            raise HTTPException(401, "missing or wrong ingest token (Authorization: Bearer <token> or ?token=)")
        if profile not in gateway.profiles.by_name:
            raise HTTPException(404, f"unknown profile {profile!r}")
        body = await request.body()
        durable = threading.Event()
        decoded = await run_in_threadpool(
            gateway.pipeline.submit, profile, body, durable.set, source="http", profile=profile
        )
        if isinstance(decoded, Rejected):
            raise HTTPException(422, f"{decoded.reason} (kept as a dead letter)")
        if isinstance(decoded, Duplicate):
            return {"duplicate": True}
        if not await run_in_threadpool(durable.wait, DURABLE_TIMEOUT_S):
            raise HTTPException(503, "storage is slow or down; retry later")
        return {"device_id": decoded.device_id, "profile": decoded.profile,
                "readings": len(decoded.readings), "events": len(decoded.events)}

    return router
