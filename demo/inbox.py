"""The demo's receivers: webhooks into the demo gateway's own memory (``anxin demo`` only), so a newcomer
sees what police, fire, the contractor and the director would have received."""

from __future__ import annotations

import logging
from collections import deque

from fastapi import APIRouter, HTTPException, Request

log = logging.getLogger(__name__)


def inbox_router() -> APIRouter:
    router = APIRouter(tags=["demo"])
    inbox: deque[dict[str, object]] = deque(maxlen=200)

    @router.post("/demo/inbox/{receiver}")
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

    @router.get("/demo/inbox")
    def demo_inbox() -> list[dict[str, object]]:
        return list(inbox)

    return router
