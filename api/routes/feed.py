"""The live feed (server-sent events): incident changes and device state changes, to viewers whose
scope covers them, and nothing else.

Each message's id is the cursor ``<timeline id>-<event id>``: the browser sends the last one back as
Last-Event-ID when it reconnects (or a page passes the cursor it was rendered at as ``?after=``), and
the feed resumes after it, so a viewer whose connection dropped misses nothing. The feed reads the
database, so it shows what every gateway instance sharing it did."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from starlette.concurrency import run_in_threadpool

from alerting.models import Incident, TimelineEntry
from anxin.db import Device, EventRecord
from api.deps import CurrentUser, Principal, System, principal_of
from api.routes.incidents import incident_rows
from api.scope import Scope

router = APIRouter(tags=["feed"])

POLL_S = 0.2  # how often the feed looks for news: the board must show a new alarm within 1 s
KEEPALIVE_S = 15.0  # a comment line so proxies keep the connection open
RECHECK_LOGIN_S = 60.0  # a logged-out or disabled user's feed ends within this
BATCH = 500
CURSOR = re.compile(r"^(\d{1,19})-(\d{1,19})$")
# Device state changes the board shows (an alarm's own state comes with its incident).
DEVICE_TYPES = ("device.", "fault.", "test")


def cursor_now(s: Session) -> str:
    """The cursor of everything stored so far: a page rendered now passes it as ``?after=``."""
    t = s.scalar(select(func.max(TimelineEntry.id))) or 0
    e = s.scalar(select(func.max(EventRecord.id))) or 0
    return f"{t}-{e}"


def parse_cursor(text: str) -> tuple[int, int] | None:
    m = CURSOR.match(text.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


GAP_WAIT_S = 10.0  # how long a missing id is looked for again before it counts as a rolled-back insert


class Gaps:
    """Ids below the cursor not seen yet. On PostgreSQL an insert takes its id when it starts and becomes
    visible when it commits, so id 41 can appear after 42 was read and the cursor moved past it: such ids
    are looked for again on every poll for GAP_WAIT_S (an id never committed, a rolled-back insert,
    is given up then)."""

    def __init__(self) -> None:
        self.timeline: dict[int, float] = {}
        self.events: dict[int, float] = {}

    @staticmethod
    def note(missing: dict[int, float], after: int, ids: list[int], now: float) -> None:
        expected = after + 1
        for i in ids:
            for gap in range(expected, min(i, expected + 1000)):  # a burst of rollbacks: bounded
                missing.setdefault(gap, now)
            expected = i + 1

    @staticmethod
    def expire(missing: dict[int, float], found: set[int], now: float) -> None:
        for i in list(missing):
            if i in found or now - missing[i] > GAP_WAIT_S:
                del missing[i]


def _ids_to_read(s: Session, id_column: InstrumentedAttribute[int], after: int, missing: dict[int, float],
                 now: float) -> tuple[list[int], int]:
    """The ids to read this poll (the next batch after the cursor, and gaps that have committed since)
    and the new cursor. The ids first, then the rows of those ids only: each statement may see newer
    commits than the one before (SQLite outside a transaction, PostgreSQL's read committed), and a row
    committed between the two must be sent next time, not skipped by a cursor that already moved past it."""
    ids = list(s.scalars(select(id_column).where(id_column > after).order_by(id_column).limit(BATCH)))
    late = set(s.scalars(select(id_column).where(id_column.in_(sorted(missing))))) if missing else set()
    Gaps.expire(missing, late, now)
    Gaps.note(missing, after, ids, now)
    return ids + sorted(late), ids[-1] if ids else after


def news(s: Session, scope: Scope, after: tuple[int, int], gaps: Gaps | None = None
         ) -> tuple[list[tuple[str, dict[str, Any]]], tuple[int, int]]:
    """What happened after the cursor in the scope (and, with ``gaps``, late commits below it): (event
    name, data) in order, and the new cursor."""
    t_after, e_after = after
    gaps = gaps or Gaps()
    now = time.monotonic()
    out: list[tuple[str, dict[str, Any]]] = []
    wanted_t, last_t = _ids_to_read(s, TimelineEntry.id, t_after, gaps.timeline, now)
    rows = s.execute(select(TimelineEntry, Incident).join(Incident, Incident.id == TimelineEntry.incident_id)
                     .where(TimelineEntry.id.in_(wanted_t), scope.where(Incident.institution_id))
                     .order_by(TimelineEntry.id)).all() if wanted_t else []
    incidents = {inc.id: row for inc, row in zip([r[1] for r in rows], incident_rows(s, [r[1] for r in rows]),
                                                  strict=True)}
    for entry, inc in rows:
        out.append(("incident", {"incident": incidents[inc.id].model_dump(mode="json"),
                                 "entry": {"id": entry.id, "at": entry.at.isoformat(), "action": entry.action,
                                           "actor": entry.actor, "channel": entry.channel, "detail": entry.detail}}))
    wanted_e, last_e = _ids_to_read(s, EventRecord.id, e_after, gaps.events, now)
    events = s.execute(select(EventRecord, Device.room, Device.name)
                       .outerjoin(Device, Device.id == EventRecord.device_id)
                       .where(EventRecord.id.in_(wanted_e), scope.where(EventRecord.institution_id),
                              or_(*(EventRecord.type.startswith(p) for p in DEVICE_TYPES)))
                       .order_by(EventRecord.id)).all() if wanted_e else []
    for e, room, name in events:
        out.append(("device", {"device_id": e.device_id, "institution_id": e.institution_id, "type": e.type,
                               "state": e.state, "ts": e.ts.isoformat(), "room": room or "", "name": name or ""}))
    return out, (last_t, last_e)


def _poll(system: System, scope: Scope, cursor: tuple[int, int], gaps: Gaps
          ) -> tuple[list[tuple[str, dict[str, Any]]], tuple[int, int]]:
    with system.sessions() as s:
        return news(s, scope, cursor, gaps)


def _still_allowed(system: System, request: Request, user: Principal) -> bool:

    with system.sessions() as s:
        again = principal_of(system, s, request)
    return again is not None and again.username == user.username


@router.get("/api/v1/feed", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}})
async def feed(request: Request, system: System, user: CurrentUser,
               last_event_id: Annotated[str | None, Header(max_length=50)] = None,
               after: Annotated[str | None, Query(max_length=50)] = None) -> StreamingResponse:
    """``event: incident`` (the incident and the timeline entry that changed it) and ``event: device``
    (a device's offline/online, fault or test event), each with an ``id`` to resume after."""
    given = last_event_id or after
    start = parse_cursor(given) if given else None
    if given and start is None:
        raise HTTPException(422, "Last-Event-ID / after must look like <timeline id>-<event id>")

    def initial() -> tuple[int, int]:
        with system.sessions() as s:
            parsed = parse_cursor(cursor_now(s))
            assert parsed is not None
            return parsed

    cursor = start if start is not None else await run_in_threadpool(initial)

    async def stream() -> AsyncIterator[bytes]:
        nonlocal cursor
        gaps = Gaps()
        yield b"retry: 1000\n\n"  # reconnect after 1 s (the default is 3 s)
        last_sent = last_check = time.monotonic()
        while True:
            items, cursor = await run_in_threadpool(_poll, system, user.scope, cursor, gaps)
            if items:
                # Every message carries the cursor after this batch: resuming from any of them may repeat the
                # rest of the batch (the console ignores entries it has), never skip one.
                ident = f"{cursor[0]}-{cursor[1]}"
                chunks = [f"id: {ident}\nevent: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"
                          for name, data in items]
                yield b"".join(chunks)
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent > KEEPALIVE_S:
                yield f": keepalive {datetime.now(UTC).isoformat()}\n\n".encode()
                last_sent = time.monotonic()
            if time.monotonic() - last_check > RECHECK_LOGIN_S:
                last_check = time.monotonic()
                if not await run_in_threadpool(_still_allowed, system, request, user):
                    return
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

