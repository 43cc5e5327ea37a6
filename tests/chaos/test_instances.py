"""Three gateways on one PostgreSQL behind a shared subscription; one is killed under load and brought
back (as systemd would): nothing lost, no step sent twice, each rule breach recorded once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import create_engine, func, select

from anxin.db import EventRecord
from tests.chaos.deployed import Load, chaos_registry, deployed, police_incidents
from tests.chaos.test_broker_restart import PRESSES, READINGS, _points, wait_everything
from tests.harness import Publisher, wait_for
from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer
from tests.servers.postgres import PostgresServer
from tests.servers.webhook import WebhookReceiver


def test_three_instances_one_killed_under_load(tmp_path: Path, mosquitto: MosquittoServer, influx: InfluxServer,
                                               postgres: PostgresServer, webhooks: WebhookReceiver,
                                               counts: Callable[[str], None]) -> None:
    url = postgres.new_database(f"chaos_{uuid.uuid4().hex[:8]}")
    env = {"ANXIN_INFLUX_URL": influx.url, "ANXIN_DATABASE_URL": url, "ANXIN_MQTT_SHARED_GROUP": "anxin",
           "ANXIN_THRESHOLDS_INTERVAL_S": "1"}
    registry = chaos_registry(webhooks.url, buttons=PRESSES)
    registry["devices"].append({"id": "air-1", "institution": "xm-001", "profile": "generic-json", "room": "午睡室"})
    with ExitStack() as stack:
        gws = [stack.enter_context(deployed(tmp_path / f"gw{i}", mqtt_port=mosquitto.port, env=env,
                                            registry=registry if i == 0 else None)) for i in range(3)]
        for gw in gws:
            gw.start()
        for gw in gws:
            gw.wait_ready()
        # CO2 above 1000 ppm for the whole 10 minutes: a breach every instance could see in InfluxDB.
        with Publisher(mosquitto.port) as pub:
            now_ms = int(time.time() * 1000)
            for k in range(6):
                pub.publish("anxin/air-1/up", f'{{"ts": {now_ms - (550 - k * 100) * 1000}, "co2": 1500}}')
        load = Load(mosquitto.port, readings=READINGS, presses=PRESSES, rate=1000).start()
        wait_for(lambda: load.sent > READINGS // 3, what="a third published")
        victim = gws[1]
        victim.kill()
        time.sleep(3)
        victim.start()  # same client id: its session, and what the broker kept in flight for it, resume
        load.wait_acknowledged()
        load.close()
        wait_everything(influx, webhooks, timeout=180)
        engine = create_engine(url)
        with engine.connect() as conn:
            def co2_events() -> int:
                return int(conn.execute(select(func.count()).select_from(EventRecord)
                                        .where(EventRecord.type == "env.co2_high")).scalar_one())

            wait_for(lambda: co2_events() >= 1, timeout=60, what="the CO2 breach")
            time.sleep(5)  # five more rounds on each of the three instances
            breaches = co2_events()
        engine.dispose()
        for gw in gws:
            assert gw.terminate() == 0
    police = police_incidents(webhooks.received)
    counts(f"3 instances, one killed and restarted: {_points(influx)}/{READINGS} points, "
           f"{len(set(police))}/{PRESSES} presses at the police, {len(police) - len(set(police))} sent twice, "
           f"CO2 breach recorded {breaches} time(s)")
    assert _points(influx) == READINGS
    assert len(set(police)) == PRESSES
    assert breaches == 1
