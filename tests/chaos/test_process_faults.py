"""The gateway's own process stopped or killed under load (2 ingest workers, as deployed)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.chaos.deployed import Load, alive, chaos_registry, children_of, deployed, police_incidents
from tests.chaos.test_broker_restart import PRESSES, READINGS, _points, wait_everything
from tests.harness import wait_for
from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer
from tests.servers.webhook import WebhookReceiver


def test_sigterm_stops_cleanly_and_a_restart_takes_up_the_rest(
        tmp_path: Path, mosquitto: MosquittoServer, influx: InfluxServer, webhooks: WebhookReceiver,
        counts: Callable[[str], None]) -> None:
    env = {"ANXIN_INFLUX_URL": influx.url, "ANXIN_MQTT_WORKERS": "2"}
    with deployed(tmp_path / "gw", mqtt_port=mosquitto.port, env=env,
                  registry=chaos_registry(webhooks.url, buttons=PRESSES)) as gw:
        gw.start().wait_ready()
        assert gw.proc is not None
        started = children_of(gw.proc.pid)
        assert len(started) >= 2, "the ingest workers are not running"
        load = Load(mosquitto.port, readings=READINGS, presses=PRESSES).start()
        wait_for(lambda: load.sent > READINGS // 3, what="a third published")
        t0 = time.monotonic()
        code = gw.terminate(timeout=60)
        stopped_in = time.monotonic() - t0
        assert code == 0, f"exit code {code} (log: {gw.log})"
        assert not [pid for pid in started if alive(pid)], "processes outlived the gateway"
        stored_at_stop = _points(influx)
        load.wait_acknowledged()  # the broker queues the rest for the gateway's sessions
        gw.start().wait_ready()
        wait_everything(influx, webhooks, timeout=120)
        load.close()
        assert gw.terminate() == 0
    police = police_incidents(webhooks.received)
    counts(f"SIGTERM under load: stopped in {stopped_in:.1f} s with exit code 0, {len(started)} child processes "
           f"all gone; {stored_at_stop} points stored before the stop, {_points(influx)}/{READINGS} after the "
           f"restart; {len(set(police))}/{PRESSES} presses at the police, {len(police) - len(set(police))} sent twice")
    assert _points(influx) == READINGS
    assert len(police) == len(set(police)) == PRESSES


def test_kill_9_under_load_workers_follow_and_a_restart_loses_nothing(
        tmp_path: Path, mosquitto: MosquittoServer, influx: InfluxServer, webhooks: WebhookReceiver,
        counts: Callable[[str], None]) -> None:
    env = {"ANXIN_INFLUX_URL": influx.url, "ANXIN_MQTT_WORKERS": "2"}
    with deployed(tmp_path / "gw", mqtt_port=mosquitto.port, env=env,
                  registry=chaos_registry(webhooks.url, buttons=PRESSES)) as gw:
        gw.start().wait_ready()
        load = Load(mosquitto.port, readings=READINGS, presses=PRESSES).start()
        wait_for(lambda: load.sent > READINGS // 2, what="half published")
        orphans = gw.kill()
        assert orphans, "the ingest workers were not running"
        # Linux tells the workers their parent died; they drain and exit instead of going on alone.
        wait_for(lambda: not any(alive(pid) for pid in orphans), timeout=60, what="the workers exit after kill -9")
        load.wait_acknowledged()
        gw.start().wait_ready()
        wait_everything(influx, webhooks, timeout=120)
        load.close()
        assert gw.terminate() == 0
    police = police_incidents(webhooks.received)
    keys = Counter(r.headers["X-Anxin-Delivery-Key"] for r in webhooks.received if r.path == "/police")
    counts(f"kill -9 under load: {len(orphans)} child processes exited by themselves; {_points(influx)}/{READINGS} "
           f"points; {len(set(police))}/{PRESSES} presses at the police, {len(police) - len(set(police))} sent "
           f"twice, each with the same delivery key (calls in flight at the kill)")
    assert _points(influx) == READINGS
    assert {k.split("/")[0] for k in keys} == {str(i) for i in set(police)} and len(set(police)) == PRESSES
    assert max(keys.values()) <= 2  # a repeat is the same step with the same key, never a third copy
