"""Named leases in the database, so that with several gateway instances one of them does a periodic
job (threshold and offline rules): whoever holds the lease works, the others wait until it lapses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from alerting.models import AlertingCursor
from anxin.db import EventRecord
from anxin.model import EventState, EventType


def hold(sessions: sessionmaker[Session], name: str, owner: str, seconds: float) -> bool:
    """Take or renew the lease ``name`` for ``owner``; True while ``owner`` holds it."""
    now = datetime.now(UTC)
    try:
        with sessions.begin() as s:
            row = s.get(AlertingCursor, name, with_for_update=True)  # FOR UPDATE: one winner on PostgreSQL
            if row is None:
                s.add(AlertingCursor(name=name, lease_owner=owner, lease_until=now + timedelta(seconds=seconds)))
                return True
            if row.lease_owner not in ("", owner) and row.lease_until is not None and row.lease_until > now:
                return False
            row.lease_owner, row.lease_until = owner, now + timedelta(seconds=seconds)
            return True
    except IntegrityError:  # another instance created the row first
        return False
    except OperationalError:  # database down: nobody can be sure of the lease, so do not act
        return False


class RulesLease:
    """The lease of the threshold and offline rules, and what the database says they found so far."""

    NAME = "rules"

    def __init__(self, sessions: sessionmaker[Session], owner: str, seconds: float,
                 on_take: Callable[[], object] | None = None) -> None:
        self._sessions, self._owner, self._seconds = sessions, owner, seconds
        self._on_take = on_take  # e.g. refresh the event store's view of active states

    def hold(self) -> bool:
        return hold(self._sessions, self.NAME, self._owner, self._seconds)

    def active_states(self) -> tuple[set[tuple[str, str]], set[str]]:
        if self._on_take is not None:
            self._on_take()
        ruled = or_(EventRecord.type.like("env.%"), EventRecord.type == EventType.OFFLINE.value)
        latest = select(func.max(EventRecord.id)).where(ruled).group_by(EventRecord.device_id, EventRecord.type)
        with self._sessions() as s:
            rows = s.execute(select(EventRecord.device_id, EventRecord.type, EventRecord.detail)
                             .where(EventRecord.id.in_(latest), EventRecord.state == EventState.ACTIVE.value)).all()
        active = {(str(detail.get("rule")), device) for device, type_, detail in rows
                  if type_ != EventType.OFFLINE.value and isinstance(detail, dict) and detail.get("rule")}
        offline = {device for device, type_, _ in rows if type_ == EventType.OFFLINE.value}
        return active, offline
