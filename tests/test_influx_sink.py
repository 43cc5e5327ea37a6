"""InfluxSink against a real influxd: write and read back, gzip, rejected batches, 5xx retry, outage
spooling and in-order replay, and a spool that outlives the sink. Plus the on-disk spool itself."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from anxin.model import Reading
from gateway.sinks.influx import InfluxSink
from gateway.sinks.line_protocol import timestamp_ns
from gateway.sinks.spool import Spool
from tests.harness import wait_for
from tests.servers.influxdb import InfluxServer

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def quick_sink(influx: InfluxServer, spool_dir: Path, **kwargs: Any) -> InfluxSink:
    """A sink with test-sized backoffs: 2 attempts 20 ms apart, replay backoff capped at 0.2 s."""
    return InfluxSink(influx.url, "anxin", spool_dir=spool_dir, backoff_s=0.02, max_backoff_s=0.2, max_attempts=2,
                      timeout=3.0, **kwargs)


def readings(n: int, start: int = 0, metric: str = "temperature") -> list[Reading]:
    """n readings with distinct timestamps; reading i has value i, so every point is identifiable."""
    return [Reading(f"dev-{i % 7}", metric, float(i), T0 + timedelta(milliseconds=i), f"inst-{i % 2}")
            for i in range(start, start + n)]


def stored(influx: InfluxServer, measurement: str = "temperature") -> dict[int, tuple[str, str, int]]:
    rows = influx.query("anxin", f"SELECT value, device_id, institution_id FROM {measurement}", epoch="ns")
    return {int(r["value"]): (r["device_id"], r["institution_id"], r["time"]) for r in rows}


def expected(rs: list[Reading]) -> dict[int, tuple[str, str | None, int]]:
    return {int(r.value): (r.device_id, r.institution_id, timestamp_ns(r.ts)) for r in rs}


def test_write_and_read_back_gzipped(tmp_path: Path, influx: InfluxServer) -> None:
    sink = InfluxSink(influx.url, "anxin", spool_dir=tmp_path)
    sent: list[httpx.Request] = []
    sink._client.event_hooks["request"].append(sent.append)  # observe what goes on the wire
    try:
        batch = readings(2000)
        sink.write(batch)
        assert sink.points_written == 2000 and sink.write_errors == 0
        assert sink.spool_segments == 0 and sink.batches_spooled == 0
    finally:
        sink.close()
    writes = [r for r in sent if r.url.path == "/write"]
    assert len(writes) == 1
    assert writes[0].headers["Content-Encoding"] == "gzip"
    assert dict(writes[0].url.params) == {"db": "anxin", "precision": "ns"}
    assert stored(influx) == expected(batch)


def test_write_without_gzip(tmp_path: Path, influx: InfluxServer) -> None:
    sink = InfluxSink(influx.url, "anxin", spool_dir=tmp_path, gzip=False)
    try:
        sink.write(readings(10))
    finally:
        sink.close()
    assert stored(influx) == expected(readings(10))


def test_bad_batch_goes_to_rejected_and_is_not_retried(tmp_path: Path, influx: InfluxServer) -> None:
    sink = quick_sink(influx, tmp_path)
    try:
        sink.write(readings(1))  # creates the database
        # Someone else made "humidity.value" a string field: our float points are refused (400).
        conflict = f'humidity,device_id=other value="wet" {timestamp_ns(T0)}\n'.encode()
        assert httpx.post(f"{influx.url}/write", params={"db": "anxin"}, content=conflict).status_code == 204
        good, bad = readings(5, start=100), readings(3, start=200, metric="humidity")
        started = time.monotonic()
        sink.write(good + bad)
        assert time.monotonic() - started < 1.0
        assert sink.batches_rejected == 1 and sink.write_errors == 1 and sink.spool_segments == 0
        time.sleep(0.5)  # many backoff periods: nothing retries it
        assert sink.write_errors == 1 and sink.spool_segments == 0 and sink.batches_spooled == 0

        [lp] = (tmp_path / "influx" / "rejected").glob("*.lp")
        assert lp.read_bytes().count(b"\n") == 8  # the whole batch is kept ...
        err = lp.with_suffix(".err").read_text()
        assert "HTTP 400" in err and "partial write" in err and "field type conflict" in err
        # ... though InfluxDB stored the good part of it
        assert set(stored(influx)) == {0, 100, 101, 102, 103, 104}
        assert sink.points_written == 1 + 5

        sink.write(readings(2, start=300))  # the sink carries on normally
        assert sink.points_written == 1 + 5 + 2 and sink.batches_rejected == 1
    finally:
        sink.close()


def test_server_error_is_retried_then_spooled_then_replayed(tmp_path: Path, influx: InfluxServer) -> None:
    # Writing to a retention policy that does not exist yet: InfluxDB answers 500, a server-side problem.
    sink = quick_sink(influx, tmp_path, retention_policy="short")
    try:
        sink.write(readings(10))
        assert sink.write_errors == 2 and sink.batches_spooled == 1 and sink.batches_rejected == 0
        influx.query("anxin", 'CREATE RETENTION POLICY "short" ON "anxin" DURATION 1000w REPLICATION 1')
        wait_for(lambda: sink.spool_segments == 0, timeout=10, what="replay")
        assert sink.batches_replayed == 1 and sink.points_written == 10
    finally:
        sink.close()
    assert len(influx.query("anxin", 'SELECT value FROM "short"."temperature"')) == 10


def test_influx_down_at_start_does_not_fail_startup(tmp_path: Path, influx: InfluxServer) -> None:
    influx.stop()
    started = time.monotonic()
    sink = quick_sink(influx, tmp_path)
    try:
        assert time.monotonic() - started < 0.5
        batch = readings(20)
        sink.write(batch)
        assert sink.batches_spooled == 1
        influx.start()  # the replay thread creates the database, then replays
        wait_for(lambda: sink.spool_segments == 0, timeout=10, what="replay")
    finally:
        sink.close()
    assert stored(influx) == expected(batch)


def order_probes(k: int, n_batches: int) -> list[Reading]:
    """Batch k overwrites probe slots k..n-1 with the value k. InfluxDB keeps the last value written at a
    timestamp, so slot s ends up holding s only if no batch before s arrived after batch s."""
    return [Reading("probe", "order_probe", float(k), T0 + timedelta(seconds=s)) for s in range(k, n_batches)]


def test_outage_spools_and_replays_every_point_once_in_order(tmp_path: Path, influx: InfluxServer) -> None:
    n_batches, size = 14, 250
    batches = [readings(size, start=k * size) for k in range(n_batches)]
    sink = quick_sink(influx, tmp_path)
    try:
        for k in range(n_batches):
            if k == 4:
                influx.stop()  # outage begins mid-stream
            if k == 10:
                assert sink.spool_segments == 6 and sink.batches_spooled == 6
                influx.start()  # outage ends: same port, same data
            started = time.monotonic()
            sink.write(batches[k] + order_probes(k, n_batches))
            assert time.monotonic() - started < 1.0, "write() must return promptly during an outage"
        wait_for(lambda: sink.spool_segments == 0, timeout=15, what="spool drained")
        assert sink.batches_replayed == sink.batches_spooled >= 6
        assert sink.spool_bytes == 0 and sink.batches_rejected == 0
        # every batch was acknowledged by InfluxDB exactly once: no batch was sent twice
        assert sink.points_written == n_batches * size + sum(n_batches - k for k in range(n_batches))
    finally:
        sink.close()
    assert stored(influx) == expected([r for b in batches for r in b])  # all points, no extras
    probes = influx.query("anxin", "SELECT value FROM order_probe", epoch="ns")
    assert [int(p["value"]) for p in probes] == list(range(n_batches))  # batches arrived in order
    assert not (tmp_path / "influx" / "rejected").exists()


def test_spool_survives_a_sink_restart(tmp_path: Path, influx: InfluxServer) -> None:
    influx.stop()
    sink = quick_sink(influx, tmp_path)
    sink.write(readings(50))
    sink.write(readings(50, start=50))
    sink.close()
    assert Spool(tmp_path / "influx").segments == 2

    influx.start()
    sink = quick_sink(influx, tmp_path)
    try:
        sink.write(readings(50, start=100))  # queued behind the old spool
        wait_for(lambda: sink.spool_segments == 0, timeout=10, what="replay after restart")
        assert sink.batches_replayed == 3 and sink.points_written == 150
    finally:
        sink.close()
    assert stored(influx) == expected(readings(150))


def test_spool_is_fifo_atomic_and_resumes_numbering(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.oldest() is None and spool.segments == 0 and spool.size_bytes == 0
    numbers = [spool.append(f"batch {i}\n".encode()) for i in range(3)]
    assert numbers == [1, 2, 3] and spool.segments == 3 and spool.size_bytes == 3 * 8
    (tmp_path / "000000000004.lp.tmp").write_bytes(b"half written")  # a crash mid-write

    spool = Spool(tmp_path)  # reopened after a "restart": the torn file is gone, numbering resumes
    assert spool.segments == 3 and spool.size_bytes == 24
    assert spool.append(b"batch 3\n") == 4
    got = []
    while (head := spool.oldest()) is not None:
        assert spool.oldest() == head  # peeking leaves it in place
        got.append(head[1])
        spool.remove(head[0])
    assert got == [f"batch {i}\n".encode() for i in range(4)]
    assert not list(tmp_path.iterdir()) and spool.size_bytes == 0 and not spool


def test_basic_auth(tmp_path: Path) -> None:
    with InfluxServer(tmp_path / "influx-auth", auth=True) as influx:
        sink = quick_sink(influx, tmp_path / "ok", username=influx.username, password=influx.password)
        try:
            sink.write(readings(5))
            assert sink.points_written == 5 and sink.write_errors == 0
        finally:
            sink.close()
        assert stored(influx) == expected(readings(5))

        # wrong credentials are not the batch's fault: it is spooled for later, not rejected
        wrong = quick_sink(influx, tmp_path / "wrong", username=influx.username, password="nope")
        try:
            wrong.write(readings(5, start=5))
            assert wrong.batches_spooled == 1 and wrong.batches_rejected == 0 and wrong.points_written == 0
        finally:
            wrong.close()
