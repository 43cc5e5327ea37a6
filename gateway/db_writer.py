"""One ordered writer thread for the relational store, so alarms never wait behind telemetry.

Items run in priority order (events before dead letters) and each is retried with backoff while the
database is unreachable; the message behind it is acknowledged only after its commit.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from anxin.metrics import Metrics

log = logging.getLogger(__name__)

PRIORITY_EVENT = 0
PRIORITY_DEAD_LETTER = 1
_STOP = 99
MAX_GROUP = 500


@dataclass(order=True, slots=True)
class _Item:
    priority: int
    seq: int
    work: Callable[[Session], Any] = field(compare=False)
    done: Callable[[Any], None] | None = field(compare=False)
    describe: Callable[[], dict[str, Any]] = field(compare=False)


class DbWriter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        metrics: Metrics,
        rejected_file: Path,
        *,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._rejected_file = rejected_file
        self._max_backoff = max_backoff_s
        self._queue: queue.PriorityQueue[_Item] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._thread = threading.Thread(target=self._run, name="db-writer", daemon=True)
        self._stopping = False
        self._idle = threading.Condition()
        self._busy = 0

    def start(self) -> None:
        self._thread.start()

    def submit(
        self,
        priority: int,
        work: Callable[[Session], Any],
        done: Callable[[Any], None] | None,
        describe: Callable[[], dict[str, Any]],
    ) -> None:
        with self._idle:
            self._busy += 1
        self._queue.put(_Item(priority, next(self._seq), work, done, describe))

    def pending(self) -> int:
        return self._busy

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        self.wait_idle(timeout)
        self._stopping = True
        self._queue.put(_Item(_STOP, next(self._seq), lambda s: None, None, dict))
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            # Whatever queued up meanwhile shares one transaction: an alarm storm costs one commit
            # per group, not per event; a lone alarm is committed at once.
            while len(group) < MAX_GROUP:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if self._stopping and any(item.priority == _STOP for item in group):
                group = [i for i in group if i.priority != _STOP]
                self._finish(group, self._execute_group(group))
                return
            self._finish(group, self._execute_group(group))

    def _finish(self, group: list[_Item], results: list[Any]) -> None:
        for item, result in zip(group, results, strict=True):
            if item.done is not None:
                try:
                    item.done(result)
                except Exception:
                    log.exception("db writer completion callback failed")
        with self._idle:
            self._busy -= len(group)
            self._idle.notify_all()

    def _execute_group(self, group: list[_Item]) -> list[Any]:
        if not group:
            return []
        backoff = 0.05
        while True:
            try:
                with self._sessions.begin() as s:
                    results = [item.work(s) for item in group]
                return results
            except (DBAPIError, DisconnectionError) as exc:
                if transient(exc):
                    # Database unreachable or not writable now: keep the items (and everything behind
                    # them) and retry; their messages stay unacknowledged meanwhile.
                    self._metrics.inc("anxin_db_write_retries_total")
                    log.warning("database write failed, retrying in %.2fs: %s", backoff, _why(exc))
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                if len(group) == 1:
                    return [self._execute(group[0])]
                # One item is refused by the database itself: find it by writing them one by one.
                return [self._execute(item) for item in group]

    def _execute(self, item: _Item) -> Any:
        backoff = 0.05
        bad_tries = 0
        while True:
            try:
                with self._sessions.begin() as s:
                    return item.work(s)
            except (DBAPIError, DisconnectionError) as exc:
                if transient(exc):
                    self._metrics.inc("anxin_db_write_retries_total")
                    log.warning("database write failed, retrying in %.2fs: %s", backoff, _why(exc))
                else:
                    bad_tries += 1
                    if bad_tries >= 2:
                        self._reject(item, exc)
                        return None
            time.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def _reject(self, item: _Item, exc: Exception) -> None:
        """The database refuses this item itself: keep it in a local file instead of losing it."""
        self._metrics.inc("anxin_db_write_rejected_total")
        log.error("database rejected a write, kept in %s: %s", self._rejected_file, exc)
        self._rejected_file.parent.mkdir(parents=True, exist_ok=True)
        with self._rejected_file.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"error": str(exc), **item.describe()}, default=str, ensure_ascii=False) + "\n")


# SQLSTATE classes and codes that say "not now" rather than "never": connection trouble (08), a
# read-only database (25006: a standby, or writes switched off), serialization/deadlock (40),
# resources such as a full disk (53), shutdown (57P), system errors (58).
_TRANSIENT_SQLSTATES = ("08", "25006", "40", "53", "57P", "58")


def transient(exc: Exception) -> bool:
    """Whether a failed write may succeed later, so it must be retried and never put aside."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return bool(sqlstate) and sqlstate.startswith(_TRANSIENT_SQLSTATES)


def _why(exc: Exception) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    text = str(cause).strip()
    return f"{cause.__class__.__name__}: {text.splitlines()[0] if text else ''}"
