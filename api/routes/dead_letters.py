"""Dead letters: messages that could not be decoded, kept whole with the reason. Administrators read
them and replay one after fixing what was wrong (a device registered, a profile corrected): the payload
goes through the decoder again as it came; decoded, it is stored like a fresh message (its alarms
alert) and the dead letter is marked replayed; failing again, it stays with the new reason."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from anxin.db import DeadLetter, utcnow
from api import audit
from api.deps import Admin, SessionDep, System
from api.editing import LongFilter, not_found
from api.models import AuditAction
from api.schemas import DeadLetterDetail, DeadLetterOut, ReplayOut
from gateway.pipeline import Rejected

router = APIRouter(prefix="/api/v1/dead-letters", tags=["admin"])

DeadLetterId = Annotated[int, Path(ge=1, le=2**63 - 1, description="dead letter id")]
PREVIEW_BYTES = 160
DURABLE_TIMEOUT_S = 10.0
REPLAYING = "replaying"
# Kept cut short (pipeline TOO_LARGE_KEEP, dead_letters MAX_PAYLOAD): decoding a part would be a guess.
TRUNCATED = ("payload too large", "payload cut from")


def as_text(payload: bytes) -> str | None:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return text if printable >= 0.95 * len(text) else None


def dead_letter_out(d: DeadLetter) -> DeadLetterOut:
    head = d.payload[:PREVIEW_BYTES]
    text = as_text(head) if len(d.payload) <= PREVIEW_BYTES else as_text(head.decode("utf-8", "ignore").encode())
    cut = "…" if len(d.payload) > PREVIEW_BYTES else ""
    return DeadLetterOut(id=d.id, received_at=d.received_at, source=d.source, reason=d.reason, size=len(d.payload),
                         preview=(text + cut) if text is not None else head.hex(" ") + cut,
                         preview_kind="text" if text is not None else "hex", replayed_at=d.replayed_at,
                         replayed_by=d.replayed_by, replay_result=d.replay_result)


def dead_letter_rows(s: Session, *, before_id: int | None = None, limit: int = 50, pending_only: bool = False,
                     source: str | None = None) -> list[DeadLetterOut]:
    q = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if before_id is not None:
        q = q.where(DeadLetter.id < before_id)
    if pending_only:
        q = q.where(DeadLetter.replayed_at.is_(None))
    if source:
        q = q.where(DeadLetter.source.contains(source, autoescape=True))
    return [dead_letter_out(d) for d in s.scalars(q)]


def _dead_letter(s: Session, dead_letter_id: int) -> DeadLetter:
    found = s.get(DeadLetter, dead_letter_id)
    if found is None:
        not_found("死信", "dead letter", str(dead_letter_id))
    return found


@router.get("")
def list_dead_letters(s: SessionDep, _: Admin, before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50, pending_only: bool = False,
                      source: LongFilter = None) -> list[DeadLetterOut]:
    """Newest first; page with ``before_id`` (the last id of the previous page)."""
    return dead_letter_rows(s, before_id=before_id, limit=limit, pending_only=pending_only, source=source)


@router.get("/{dead_letter_id}")
def get_dead_letter(dead_letter_id: DeadLetterId, s: SessionDep, _: Admin) -> DeadLetterDetail:
    d = _dead_letter(s, dead_letter_id)
    return DeadLetterDetail(**dead_letter_out(d).model_dump(), text=as_text(d.payload), hex=d.payload.hex(" "))


@router.post("/{dead_letter_id}/replay")
def replay(dead_letter_id: DeadLetterId, request: Request, system: System, user: Admin) -> ReplayOut:
    """Feeds the payload through the decoder again. 409 when it was replayed already (or is being), or
    was kept cut short; 503 when storage did not confirm in time (it stays replayable)."""
    with system.sessions.begin() as s:
        d = _dead_letter(s, dead_letter_id)
        if d.replayed_at is not None:
            raise HTTPException(409, f"已重放 / replayed already ({d.replay_result or REPLAYING})")
        if d.reason.startswith(TRUNCATED) or TRUNCATED[1] in d.reason:
            raise HTTPException(409, "载荷已截断，无法重放 / the payload was kept cut short: it cannot be replayed")
        origin, payload, received_at = d.source, d.payload, d.received_at
        # The claim: one replay at a time, across instances too (a conditional update).
        claimed = s.execute(update(DeadLetter).where(DeadLetter.id == dead_letter_id, DeadLetter.replayed_at.is_(None))
                            .values(replayed_at=utcnow(), replayed_by=user.username, replay_result=REPLAYING)
                            .execution_options(synchronize_session=False))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise HTTPException(409, "正在重放 / being replayed by someone else")
    durable = threading.Event()
    outcome = system.pipeline.replay(origin, payload, received_at, durable.set)
    stored = not isinstance(outcome, Rejected) and durable.wait(DURABLE_TIMEOUT_S)
    with system.sessions.begin() as s:
        d = _dead_letter(s, dead_letter_id)
        if isinstance(outcome, Rejected):
            message = f"仍无法解码 / still not decodable: {outcome.reason}"
            d.replayed_at, d.replayed_by, d.replay_result = None, user.username, f"failed ({outcome.kind})"
            d.reason = outcome.reason
        elif not stored:
            message = "存储未及时确认，可稍后再试 / storage did not confirm in time: try again later"
            d.replayed_at, d.replayed_by, d.replay_result = None, user.username, "storage timeout"
        else:
            message = (f"已解码 / decoded: {outcome.profile}, device {outcome.device_id}, "
                       f"{len(outcome.readings)} reading(s), {len(outcome.events)} event(s)")
            d.replayed_at, d.replayed_by, d.replay_result = utcnow(), user.username, message
        audit.record(s, user, request, AuditAction.REPLAY, "dead_letter", str(dead_letter_id), message,
                     ok=stored, source=origin)
        out = dead_letter_out(d)
    if not isinstance(outcome, Rejected) and not stored:
        raise HTTPException(503, message)
    return ReplayOut(ok=stored, message=message, dead_letter=out)
