"""Persists decoded events and hands them to listeners (alerting) after commit.

Devices repeat their state in every report (``smoke: false`` each hour), so a *clear* is stored only
when it ends an active state (known in memory, primed from the database at start-up); every *active*
event is stored, however often it repeats.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from anxin.db import EventRecord
from anxin.metrics import Metrics
from anxin.model import Event, EventState, EventType
from gateway.db_writer import PRIORITY_EVENT, DbWriter

log = logging.getLogger(__name__)

Listener = Callable[[Sequence[tuple[int, Event]]], None]


class EventStore:
    def __init__(self, writer: DbWriter, metrics: Metrics) -> None:
        self._writer = writer
        self._metrics = metrics
        # (device id, event type's value) -> last state. Keyed by the value, not the enum member: hashing a
        # member runs Python code (Enum.__hash__), and this is looked up for every event of every message.
        self._last: dict[tuple[str, str], EventState] = {}
        self._lock = threading.Lock()  # submitters: the MQTT thread and HTTP worker threads
        self.listeners: list[Listener] = []

    def prime(self, sessions: sessionmaker[Session]) -> int:
        """Load the states that are active according to the database, so a clear arriving after a
        restart still ends its alarm. Returns how many are active."""
        latest = select(func.max(EventRecord.id)).group_by(EventRecord.device_id, EventRecord.type)
        with sessions() as s:
            rows = s.execute(select(EventRecord.device_id, EventRecord.type)
                             .where(EventRecord.id.in_(latest), EventRecord.state == EventState.ACTIVE.value)).all()
        with self._lock:
            for device_id, type_ in rows:
                with contextlib.suppress(ValueError):
                    self._last[(device_id, EventType(type_)._value_)] = EventState.ACTIVE
        return len(rows)

    def _changes(self, events: Sequence[Event]) -> list[Event]:
        """Keep every active event and the clears that end an active state; drop the rest before they
        cost a database round trip (a sensor saying "no smoke" every hour is not news)."""
        keep: list[Event] = []
        clear, active, last = EventState.CLEAR, EventState.ACTIVE, self._last
        with self._lock:
            for e in events:
                key = (e.device_id, e.type._value_)
                state = e.state
                if state is clear and last.get(key) is not active:
                    continue
                last[key] = state
                keep.append(e)
        return keep

    def persist(self, events: Sequence[Event], source: str, received_at: datetime, done: Callable[[], None]) -> None:
        events = self._changes(events)
        if not events:
            done()
            return

        def work(s: Session) -> list[tuple[EventRecord, Event]]:
            rows = [(EventRecord(device_id=e.device_id, institution_id=e.institution_id, type=e.type.value,
                                 state=e.state.value, ts=e.ts, received_at=received_at, source=source,
                                 detail=_jsonable(e.detail)), e) for e in events]
            s.add_all([rec for rec, _ in rows])
            return rows

        def finished(result: Any) -> None:
            stored = [(rec.id, e) for rec, e in result or ()]  # ids assigned by the commit
            for _, e in stored:
                self._metrics.inc("anxin_events_total", type=e.type.value, state=e.state.value)
            done()
            if stored:
                for listener in self.listeners:
                    try:
                        listener(stored)
                    except Exception:
                        log.exception("event listener failed")

        self._writer.submit(PRIORITY_EVENT, work, finished, lambda: {"kind": "events", "source": source,
                                                                      "events": [e.as_dict() for e in events]})


def _jsonable(detail: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in detail.items():
        out[k] = v if isinstance(v, str | int | float | bool | None | list | dict) else repr(v)
    return out
