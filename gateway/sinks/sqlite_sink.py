"""Readings in a local SQLite table, for the embedded demo (no InfluxDB).

Plain sqlite3 with executemany: this is the ingest hot path, where SQLAlchemy's per-row work buys nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from anxin.model import Reading

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    ts_ns INTEGER NOT NULL, device_id TEXT NOT NULL, institution_id TEXT, metric TEXT NOT NULL, value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_readings_device_metric_ts ON readings (device_id, metric, ts_ns);
"""


class SqliteSink:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written from the flush thread, read by tests/API threads: one connection behind a lock.
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.points_written = 0

    def write(self, readings: Sequence[Reading]) -> None:
        rows = [(round(r.ts.timestamp() * 1_000_000) * 1000, r.device_id, r.institution_id, r.metric, r.value)
                for r in readings]
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?)", rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self.points_written += len(rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
