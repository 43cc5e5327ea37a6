"""Platform pushes (CTWing, OceanConnect, vendor hosts): ``POST /ingest/<profile>``.

A push is answered 200 only once what it carried is durable, so a platform that retries on failure
never loses a message; bad payloads get 422 with the reason and are dead-lettered.
"""

from __future__ import annotations

import hmac
import threading

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from api.deps import System
from gateway.pipeline import Duplicate, Rejected

DURABLE_TIMEOUT_S = 10.0

router = APIRouter(tags=["ingest"])


def _authorized(system: System, request: Request) -> bool:
    auth = request.headers.get("authorization", "")
    given = auth[7:] if auth.lower().startswith("bearer ") else request.query_params.get("token", "")
    return bool(given) and any(hmac.compare_digest(given.encode(), t.encode()) for t in system.settings.ingest_tokens)


@router.post("/ingest/{profile}")
async def ingest(profile: str, request: Request, system: System) -> dict[str, object]:
    if not _authorized(system, request):
        raise HTTPException(401, "missing or wrong ingest token (Authorization: Bearer <token> or ?token=)")
    if profile not in system.profiles.by_name:
        raise HTTPException(404, f"unknown profile {profile!r}")
    body = await request.body()
    durable = threading.Event()
    decoded = await run_in_threadpool(
        system.pipeline.submit, profile, body, durable.set, source="http", profile=profile
    )
    if isinstance(decoded, Rejected):
        raise HTTPException(422, f"{decoded.reason} (kept as a dead letter)")
    if isinstance(decoded, Duplicate):
        return {"duplicate": True}
    if not await run_in_threadpool(durable.wait, DURABLE_TIMEOUT_S):
        raise HTTPException(503, "storage is slow or down; retry later")
    return {"device_id": decoded.device_id, "profile": decoded.profile,
            "readings": len(decoded.readings), "events": len(decoded.events)}
