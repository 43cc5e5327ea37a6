"""Several ingest processes in one shared subscription group: every message stored exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from anxin.config import Settings
from gateway.mqtt_source import partition_of
from gateway.workers import WorkerSupervisor, start_extra_workers, stop_workers, worker_snapshots
from program.web import build_app as create_app
from tests.harness import REGISTRY, TEST_SECRET, Publisher, gateway_settings, running_gateway, wait_for
from tests.servers.mosquitto import MosquittoServer


def _stored(path: Path) -> list[tuple[str, float]]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        try:
            return conn.execute("SELECT device_id, value FROM readings WHERE metric='battery'").fetchall()
        except sqlite3.OperationalError:
            return []


def _subscribed(settings: Settings) -> int:
    """Workers whose session holds its subscriptions, from the metrics they write for the main process."""
    return sum(any(g[0] == "anxin_mqtt_subscribed" and g[2] == 1 for g in snap["gauges"])
               for _, snap in worker_snapshots(settings))


@pytest.mark.parametrize("group", ["", "anxin-test"], ids=["hash-partitions", "shared-group"])
def test_two_workers_share_the_load_without_duplicates(tmp_path: Path, mosquitto: MosquittoServer,
                                                       group: str) -> None:
    """Without a group each worker keeps its hash partition of the topics; with one the broker spreads."""
    settings = gateway_settings(tmp_path, mqtt_port=mosquitto.port, telemetry_sink="sqlite",
                                mqtt_shared_group=group, mqtt_workers=2, duplicate_window_s=0)
    n = 400
    with running_gateway(settings, registry=REGISTRY, mqtt=False) as gw:
        workers = start_extra_workers(settings)
        assert len(workers) == 2
        try:
            wait_for(lambda: all(w.is_alive() for w in workers), what="worker start")
            wait_for(lambda: _subscribed(settings) == 2, timeout=60, what="workers subscribed")
            with Publisher(mosquitto.port) as pub:
                for i in range(n):
                    pub.publish(f"zigbee2mqtt/dev-{i}", b'{"smoke":false,"battery":%d}' % (i % 100))
            wait_for(lambda: len(_stored(settings.sqlite_telemetry_path)) >= n, timeout=60, what="all stored")
            assert gw.metrics.get("anxin_messages_total", profile="zigbee2mqtt-smoke") == 0  # main: no MQTT
            if not group:  # each worker decoded its own partition and left the other's unread
                wait_for(lambda: _left_to_other_worker(settings) == n, what="partitions accounted for")
        finally:
            stop_workers(workers)
    rows = _stored(settings.sqlite_telemetry_path)
    assert sorted(rows) == sorted((f"dev-{i}", float(i % 100)) for i in range(n))


def _left_to_other_worker(settings: Settings) -> float:
    return sum(float(value) for _, snap in worker_snapshots(settings) for name, _labels, value in snap["counters"]
               if name == "anxin_mqtt_left_to_other_worker_total")


def test_a_dead_worker_is_replaced_and_its_messages_redelivered(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    settings = gateway_settings(tmp_path, mqtt_port=mosquitto.port, telemetry_sink="sqlite",
                                mqtt_shared_group="anxin-test", mqtt_workers=2, duplicate_window_s=0)
    with running_gateway(settings, registry=REGISTRY, mqtt=False) as gw:
        supervisor = WorkerSupervisor(settings, start_extra_workers(settings), interval_s=0.2).start()
        gw.workers = supervisor
        http = TestClient(create_app(gw))
        try:
            wait_for(lambda: http.get("/healthz").json()["workers"]["alive"] == 2, what="workers up")
            wait_for(lambda: _subscribed(settings) == 2, timeout=60, what="workers subscribed")
            victim = supervisor.procs[0]
            os.kill(victim.pid or 0, signal.SIGKILL)
            victim.join(5)
            with Publisher(mosquitto.port) as pub:
                for i in range(200):
                    pub.publish(f"zigbee2mqtt/dev-{i}", b'{"smoke":false,"battery":%d}' % (i % 100))
            wait_for(lambda: supervisor.restarts == 1 and supervisor.alive() == 2, what="worker replaced")
            wait_for(lambda: len(_stored(settings.sqlite_telemetry_path)) >= 200, timeout=60, what="all stored")
            assert http.get("/healthz").json()["workers"] == {"expected": 2, "alive": 2, "restarts": 1}
        finally:
            supervisor.stop()
    assert sorted(_stored(settings.sqlite_telemetry_path)) == sorted((f"dev-{i}", float(i % 100)) for i in range(200))


def test_partitions_are_stable_and_spread() -> None:
    topics = [f"zigbee2mqtt/dev-{i}" for i in range(1000)]
    first = [partition_of(t, 2) for t in topics]
    assert first == [partition_of(t, 2) for t in topics]  # the same worker for a device, always
    assert 400 < first.count(0) < 600


def test_anxin_gateway_with_workers_reports_them_in_healthz(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    """`anxin gateway` as deployed: 2 supervised ingest workers, the alarm lane in the main process."""
    import subprocess
    import sys

    import httpx

    from tests.servers import free_port, stop_process, wait_port

    port = free_port()
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "ANXIN_DATABASE_URL": f"sqlite:///{tmp_path}/anxin.db",
           "ANXIN_MQTT_PORT": str(mosquitto.port), "ANXIN_MQTT_WORKERS": "2", "ANXIN_HTTP_PORT": str(port),
           "ANXIN_TELEMETRY_SINK": "sqlite", "ANXIN_SQLITE_TELEMETRY_PATH": str(tmp_path / "telemetry.db"),
           "ANXIN_SPOOL_DIR": str(tmp_path / "spool"), "ANXIN_ALERTING_SECRET": TEST_SECRET,
           "ANXIN_API_TOKENS": "desk:desk-token-0123456789"}
    proc = subprocess.Popen([sys.executable, "-m", "program.cli", "gateway"], env=env, cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 60)

        def health() -> dict[str, object]:
            return dict(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json())

        wait_for(lambda: health()["status"] == "ok", timeout=30, what="gateway healthy")
        body = health()
        assert body["workers"] == {"expected": 2, "alive": 2, "restarts": 0} and "mqtt_connected" not in body
        assert body["subscribed"] == {"worker-1": True, "worker-2": True, "alarm_lane": True}
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        assert body["alarm_lane"] == {"connected": True, "topics": 0}

        # The workers' counters are served by the main process, labelled per worker.
        def metrics() -> str:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

        wait_for(lambda: all(f'anxin_mqtt_subscribed{{worker="{n}"}} 1' in metrics() for n in (1, 2)),
                 timeout=30, what="both workers subscribed")
        with Publisher(mosquitto.port) as pub:
            for i in range(40):
                pub.publish(f"zigbee2mqtt/dev-{i}", b'{"smoke":false,"battery":50}')

        def ingested() -> float:
            rows = [line for line in metrics().splitlines() if line.startswith("anxin_messages_total{")]
            assert all('worker="' in row for row in rows), rows
            return sum(float(row.rsplit(" ", 1)[1]) for row in rows)

        wait_for(lambda: ingested() == 40, timeout=30, what="40 messages counted across the workers")
        text = metrics()
        assert text.count("# TYPE anxin_messages_total counter") == 1
        assert 'anxin_telemetry_pending{worker="1"}' in text and 'anxin_telemetry_pending{worker="2"}' in text
    finally:
        stop_process(proc, 30)
