"""Readings in a local SQLite table, for the embedded demo (no InfluxDB).

This is the ingest hot path, so it uses the stdlib sqlite3 module directly: one executemany per batch
inside one transaction. SQLAlchemy Core would add per-row work (parameter processing, result handling
and compiled-statement bookkeeping for every row) that buys nothing for a fixed five-column INSERT.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from anxin.model import Quality, Reading
from gateway.sinks.line_protocol import timestamp_ns

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    ts_ns INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    institution_id TEXT,
    metric TEXT NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_readings_device_metric_ts ON readings (device_id, metric, ts_ns);
-- Values outside their metric's plausible range (anxin.model.Quality): kept for engineers, apart from
-- the readings that thresholds and dashboards use.
CREATE TABLE IF NOT EXISTS implausible_readings (
    ts_ns INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    institution_id TEXT,
    metric TEXT NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_implausible_device_metric_ts ON implausible_readings (device_id, metric, ts_ns);
"""


class SqliteSink:
    """TelemetrySink writing to SQLite. Safe to use from any thread: one connection behind a lock."""

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created here, written from the batcher's flush thread (and read by tests / the API):
        # check_same_thread=False plus self._lock serialises every use of the one connection.
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        # FULL: the WAL is fsynced at every commit, so write() returning means durable (the sink contract);
        # one fsync per batch, not per reading.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.points_written = 0

    def write(self, readings: Sequence[Reading]) -> None:
        rows = [(timestamp_ns(r.ts), r.device_id, r.institution_id, r.metric, float(r.value)) for r in readings
                if r.quality is Quality.GOOD]
        # SQLite stores NaN as NULL (refused by NOT NULL): like InfluxDB, non-finite values are left out.
        flagged = [(timestamp_ns(r.ts), r.device_id, r.institution_id, r.metric, float(r.value)) for r in readings
                   if r.quality is not Quality.GOOD and math.isfinite(r.value)]
        if not rows and not flagged:
            return
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(
                    "INSERT INTO readings (ts_ns, device_id, institution_id, metric, value) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                if flagged:
                    self._conn.executemany(
                        "INSERT INTO implausible_readings (ts_ns, device_id, institution_id, metric, value) "
                        "VALUES (?, ?, ?, ?, ?)", flagged)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self.points_written += len(rows) + len(flagged)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
