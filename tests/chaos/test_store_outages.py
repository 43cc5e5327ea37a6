"""The stores go away under load: InfluxDB stopped, the relational database read-only. Readings and
presses wait (spool, retried transactions, unacknowledged messages) and all land once it is back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.chaos.deployed import Load, chaos_registry, deployed, police_incidents
from tests.chaos.test_broker_restart import PRESSES, READINGS, _check_everything_arrived, _points
from tests.harness import wait_for
from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer
from tests.servers.postgres import PostgresServer
from tests.servers.webhook import WebhookReceiver

OUTAGE_S = 10.0


def _spooled(metrics: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("anxin_spool_bytes"))


def test_influxdb_down_mid_stream(tmp_path: Path, mosquitto: MosquittoServer, influx: InfluxServer,
                                  webhooks: WebhookReceiver, counts: Callable[[str], None]) -> None:
    with deployed(tmp_path / "gw", mqtt_port=mosquitto.port, env={"ANXIN_INFLUX_URL": influx.url},
                  registry=chaos_registry(webhooks.url, buttons=PRESSES)) as gw:
        gw.start().wait_ready()
        load = Load(mosquitto.port, readings=READINGS, presses=PRESSES, rate=1000).start()
        wait_for(lambda: load.sent > READINGS // 4, what="a quarter published")
        influx.stop()
        wait_for(lambda: _spooled(gw.metrics()) > 0, timeout=OUTAGE_S * 3, what="readings spooled to disk")
        time.sleep(OUTAGE_S)
        influx.start()
        load.wait_acknowledged()
        load.close()
        _check_everything_arrived(influx, webhooks, counts, f"InfluxDB stopped for {OUTAGE_S:.0f} s")
        assert gw.terminate() == 0


def test_database_read_only_mid_stream(tmp_path: Path, mosquitto: MosquittoServer, influx: InfluxServer,
                                       postgres: PostgresServer, webhooks: WebhookReceiver,
                                       counts: Callable[[str], None]) -> None:
    name = f"chaos_{uuid.uuid4().hex[:8]}"
    url = postgres.new_database(name)
    env = {"ANXIN_INFLUX_URL": influx.url, "ANXIN_DATABASE_URL": url}
    with deployed(tmp_path / "gw", mqtt_port=mosquitto.port, env=env,
                  registry=chaos_registry(webhooks.url, buttons=PRESSES)) as gw:
        gw.start().wait_ready()
        load = Load(mosquitto.port, readings=READINGS, presses=PRESSES, rate=1000).start()
        wait_for(lambda: load.sent > READINGS // 4, what="a quarter published")
        # Every new transaction read-only, and every open connection dropped so the gateway must reconnect.
        postgres.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
        postgres.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        time.sleep(OUTAGE_S)
        during = len(set(police_incidents(webhooks.received)))
        postgres.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = off")
        postgres.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        load.wait_acknowledged()
        load.close()
        _check_everything_arrived(influx, webhooks, counts,
                                  f"database read-only for {OUTAGE_S:.0f} s ({during} presses at the police before "
                                  "it was writable again)")
        assert _points(influx) == READINGS
        assert gw.terminate() == 0
