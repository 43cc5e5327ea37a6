"""Messages that could not be decoded: persisted whole with the reason, counted in metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from anxin.db import DeadLetter
from anxin.metrics import Metrics
from gateway.db_writer import PRIORITY_DEAD_LETTER, DbWriter

log = logging.getLogger(__name__)

MAX_PAYLOAD = 256 * 1024  # a dead letter keeps this much; the reason says when it was cut


class DeadLetterStore:
    def __init__(self, writer: DbWriter, metrics: Metrics) -> None:
        self._writer = writer
        self._metrics = metrics

    def put(
        self, kind: str, source: str, payload: bytes, reason: str, received_at: datetime, done: Callable[[], None]
    ) -> None:
        """``kind`` is a short label for metrics (no_profile, malformed, unusable, too_large, internal_error)."""
        self._metrics.inc("anxin_dead_letters_total", kind=kind)
        log.info("dead letter from %s: %s", source, reason)
        if len(payload) > MAX_PAYLOAD:
            reason = f"{reason} (payload cut from {len(payload)} bytes)"
            payload = payload[:MAX_PAYLOAD]

        def work(s: Session) -> None:
            s.add(DeadLetter(received_at=received_at, source=source[:300], payload=payload, reason=reason))

        self._writer.submit(PRIORITY_DEAD_LETTER, work, lambda _: done(),
                            lambda: {"kind": "dead_letter", "source": source, "reason": reason,
                                     "payload_hex": payload.hex()})
