"""Broker restarts and cold starts under load, `anxin gateway` as deployed with its defaults: every
reading stored once, every press reaches the police once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos.deployed import Load, chaos_registry, deployed, police_incidents
from tests.harness import wait_for
from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer
from tests.servers.webhook import WebhookReceiver

READINGS = 10_000
PRESSES = 100


def _points(influx: InfluxServer) -> int:
    try:
        rows = influx.query("anxin", "SELECT count(value) FROM temperature")
    except RuntimeError:  # database not created yet
        return 0
    return int(rows[0]["count"]) if rows else 0


def wait_everything(influx: InfluxServer, webhooks: WebhookReceiver, timeout: float = 120) -> None:
    """Until every reading is a point in InfluxDB and every press reached the police."""
    wait_for(lambda: _points(influx) == READINGS, timeout=timeout, what=f"{READINGS} points in InfluxDB")
    wait_for(lambda: len(set(police_incidents(webhooks.received))) == PRESSES, timeout=timeout,
             what=f"{PRESSES} presses at the police")


def _check_everything_arrived(influx: InfluxServer, webhooks: WebhookReceiver, counts: Callable[[str], None],
                              what: str) -> None:
    wait_everything(influx, webhooks)
    time.sleep(2)  # anything sent twice would show now
    police = police_incidents(webhooks.received)
    counts(f"{what}: {_points(influx)}/{READINGS} points stored, {len(set(police))}/{PRESSES} presses "
           f"at the police, {len(police) - len(set(police))} sent twice")
    assert _points(influx) == READINGS
    assert len(police) == len(set(police)) == PRESSES


@pytest.mark.parametrize("workers", [1, 2])
def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path, mosquitto: MosquittoServer, influx: InfluxServer,
                                                 webhooks: WebhookReceiver, counts: Callable[[str], None],
                                                 workers: int) -> None:
    env = {"ANXIN_INFLUX_URL": influx.url, "ANXIN_MQTT_WORKERS": str(workers)}
    with deployed(tmp_path / "gw", mqtt_port=mosquitto.port, env=env,
                  registry=chaos_registry(webhooks.url, buttons=PRESSES)) as gw:
        gw.start().wait_ready()
        load = Load(mosquitto.port, readings=READINGS, presses=PRESSES).start()
        wait_for(lambda: load.sent > READINGS // 3, what="a third published")
        mosquitto.restart()  # clean stop: mosquitto writes its persistence file on the way out
        assert mosquitto.db_file.stat().st_size > 1000, "the broker did not persist the sessions"
        load.wait_acknowledged()
        load.close()
        _check_everything_arrived(influx, webhooks, counts, f"broker restarted, {workers} ingest process(es)")
        assert gw.terminate() == 0


def test_cold_start_with_workers_ready_means_subscribed(tmp_path: Path, mosquitto: MosquittoServer,
                                                        influx: InfluxServer, webhooks: WebhookReceiver,
                                                        counts: Callable[[str], None]) -> None:
    """The first start: publishing as soon as /readyz says ready loses nothing."""
    env = {"ANXIN_INFLUX_URL": influx.url, "ANXIN_MQTT_WORKERS": "2"}
    with deployed(tmp_path / "gw", mqtt_port=mosquitto.port, env=env,
                  registry=chaos_registry(webhooks.url, buttons=PRESSES)) as gw:
        gw.start()
        wait_for(gw.ready, timeout=60, interval=0.01, what="ready")
        load = Load(mosquitto.port, readings=READINGS, presses=PRESSES, rate=5000).start()
        load.wait_acknowledged()
        load.close()
        _check_everything_arrived(influx, webhooks, counts, "cold start with 2 workers, publishing at ready")
        assert gw.terminate() == 0
