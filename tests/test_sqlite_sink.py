"""SqliteSink: schema, one transaction per batch, WAL, use from several threads, durability on reopen."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from anxin.model import Reading
from gateway.sinks import TelemetrySink
from gateway.sinks.line_protocol import timestamp_ns
from gateway.sinks.sqlite_sink import SqliteSink

T0 = datetime(2024, 5, 1, 12, 0, 0, 654321, tzinfo=UTC)


def readings(n: int, start: int = 0, device: str = "dev") -> list[Reading]:
    return [Reading(f"{device}-{i % 5}", "temperature", float(i), T0 + timedelta(milliseconds=i),
                    "inst-1" if i % 2 else None) for i in range(start, start + n)]


def rows(path: Path) -> list[tuple[int, str, str | None, str, float]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT ts_ns, device_id, institution_id, metric, value FROM readings ORDER BY value"))


def test_write_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "telemetry.db"
    sink: TelemetrySink = SqliteSink(path)
    batch = [*readings(100), Reading("Kühlschrank Küche", "humidity", 1000.5, T0, "机构 1")]
    sink.write(batch)
    sink.write([])
    sink.close()
    assert rows(path) == [(timestamp_ns(r.ts), r.device_id, r.institution_id, r.metric, r.value) for r in batch]
    assert rows(path)[0][0] == 1714564800654321000  # exact nanoseconds

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        indexes = {r[1]: r for r in conn.execute("PRAGMA index_list(readings)")}
        cols = [r[2] for r in conn.execute("PRAGMA index_info(ix_readings_device_metric_ts)")]
    assert "ix_readings_device_metric_ts" in indexes and cols == ["device_id", "metric", "ts_ns"]

    sink = SqliteSink(path)  # reopening keeps the data and the schema
    sink.write(readings(1, start=5000))
    sink.close()
    assert len(rows(path)) == 102


def test_a_failed_batch_is_rolled_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.db"
    sink = SqliteSink(path)
    bad = [*readings(10), Reading(None, "temperature", 1.0, T0)]  # type: ignore[arg-type]  # NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        sink.write(bad)
    sink.write(readings(3, start=100))  # the connection is usable again
    sink.close()
    assert [r[4] for r in rows(path)] == [100.0, 101.0, 102.0]


def test_writes_from_other_threads(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.db"
    sink = SqliteSink(path)  # created in this thread, used from four others at once
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for b in range(20):
                sink.write(readings(50, start=(t * 20 + b) * 50, device=f"t{t}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    sink.close()
    assert not errors
    assert sink.points_written == 4 * 20 * 50
    assert [r[4] for r in rows(path)] == [float(i) for i in range(4 * 20 * 50)]
