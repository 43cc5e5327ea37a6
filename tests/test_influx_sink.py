"""InfluxDB sink against a real influxd: escaping round trip, gzip, rejected batches, spool and replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from anxin.model import Reading
from gateway.sinks.influx import InfluxSink
from gateway.sinks.line_protocol import encode, escape_tag
from gateway.sinks.spool import Spool
from tests.harness import wait_for
from tests.servers.influxdb import InfluxServer

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def readings(n: int, device: str = "dev", start: int = 0) -> list[Reading]:
    return [Reading(f"{device}-{i % 7}", "temperature", float(i), T0 + timedelta(milliseconds=i), "inst-1")
            for i in range(start, start + n)]


def test_line_protocol_escaping() -> None:
    assert escape_tag("Kühlschrank Küche") == "Kühlschrank\\ Küche"
    assert escape_tag("a,b=c") == "a\\,b\\=c"
    assert escape_tag("line\nbreak") == "line\\ break"
    line = encode([Reading("x y", "co2", 936.0, datetime(2023, 5, 22, 7, 47, 5, 404859, tzinfo=UTC))]).decode()
    assert line == "co2,device_id=x\\ y value=936.0 1684741625404859000\n"


def test_awkward_device_names_round_trip(tmp_path: Path, influx: InfluxServer) -> None:
    names = ["Kühlschrank Küche", "sensore perdita gas", "a,b=c", "前台一键报警", "back\\slash"]
    sink = InfluxSink(influx.url, "anxin", spool_dir=tmp_path)
    try:
        sink.write([Reading(n, "temperature", float(i), T0, "机构 1") for i, n in enumerate(names)])
        assert sink.points_written == len(names) and sink.spool_segments == 0
    finally:
        sink.close()
    rows = influx.query("anxin", "SELECT value, device_id, institution_id FROM temperature")
    assert sorted((r["device_id"], r["value"]) for r in rows) == sorted((n, float(i)) for i, n in enumerate(names))
    assert {r["institution_id"] for r in rows} == {"机构 1"}


def test_trailing_backslash_cannot_break_a_batch(tmp_path: Path, influx: InfluxServer) -> None:
    sink = InfluxSink(influx.url, "anxin", spool_dir=tmp_path)
    try:
        sink.write([Reading("tail\\", "temperature", 1.0, T0), Reading("ok", "temperature", 2.0, T0)])
        assert sink.batches_rejected == 0
    finally:
        sink.close()
    rows = influx.query("anxin", "SELECT value, device_id FROM temperature")
    assert sorted(r["device_id"] for r in rows) == ["ok", "tail/"]


def test_rejected_batch_is_kept_not_retried(tmp_path: Path, influx: InfluxServer) -> None:
    sink = InfluxSink(influx.url, "anxin", spool_dir=tmp_path, gzip_body=False)
    try:
        sink.write(readings(3))
        # A field-type conflict: InfluxDB refuses (400) the point; the batch is kept with the reason.
        ts = int(T0.timestamp()) * 10**9
        sink._send(b'temperature,device_id=dev-0 value="hot" %d\n' % ts)
        sink.write([])  # nothing to send
        assert sink.batches_rejected == 1 and sink.spool_segments == 0
        err = next((tmp_path / "influx-rejected").glob("*.err")).read_text()
        assert "HTTP 400" in err and "conflict" in err
    finally:
        sink.close()


def test_outage_spools_in_order_and_replays_everything(tmp_path: Path, influx: InfluxServer) -> None:
    sink = InfluxSink(influx.url, "anxin", spool_dir=tmp_path, backoff_s=0.01, max_attempts=2)
    try:
        sink.write(readings(100, start=0))
        influx.stop()
        sink.write(readings(100, start=100))  # returns: spooled
        sink.write(readings(100, start=200))
        assert sink.spool_segments == 2 and sink.batches_spooled == 2
        influx.start()
        sink.write(readings(100, start=300))  # behind the spool if it is not drained yet: keeps order
        wait_for(lambda: sink.spool_segments == 0, timeout=30, what="replay")
        assert sink.batches_replayed in (2, 3)
    finally:
        sink.close()
    rows = influx.query("anxin", "SELECT count(value) FROM temperature")
    assert rows[0]["count"] == 400


def test_spool_survives_a_restart_of_the_gateway(tmp_path: Path, influx: InfluxServer) -> None:
    influx.stop()
    sink = InfluxSink(influx.url, "anxin", spool_dir=tmp_path, backoff_s=0.01, max_attempts=1)
    sink.write(readings(50))
    sink.close()
    assert Spool(tmp_path / "influx").segments == 1
    influx.start()
    sink = InfluxSink(influx.url, "anxin", spool_dir=tmp_path, backoff_s=0.01)
    try:
        wait_for(lambda: sink.spool_segments == 0, timeout=30, what="replay after restart")
    finally:
        sink.close()
    assert influx.query("anxin", "SELECT count(value) FROM temperature")[0]["count"] == 50


def test_spool_is_fifo_and_atomic(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(3):
        spool.append(f"batch {i}\n".encode())
    (tmp_path / "000000000099.tmp").write_bytes(b"half written")  # a crash mid-write
    spool = Spool(tmp_path)  # reopened: numbering resumes, the torn file is gone
    spool.append(b"batch 3\n")
    got = []
    while (head := spool.oldest()) is not None:
        got.append(head[1])
        spool.remove(head[0])
    assert got == [f"batch {i}\n".encode() for i in range(4)]
    assert not list(tmp_path.glob("*.tmp")) and spool.size_bytes == 0
