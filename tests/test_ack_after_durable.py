"""Acknowledgement only after durability, proven with a real broker and a real crash: a gateway that
cannot make readings durable (InfluxDB down and its spool unusable) is killed with SIGKILL; the broker
then redelivers every message to the next gateway on the same session, which stores them all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.harness import Publisher, gateway_settings, running_gateway, wait_for
from tests.servers import free_port
from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer

CRASHING_GATEWAY = textwrap.dedent("""
    import shutil, sys, time
    from pathlib import Path
    from tests.harness import gateway_settings
    from gateway.service import Gateway

    tmp, port, dead_influx, progress = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    settings = gateway_settings(tmp, mqtt_port=port, influx_url=dead_influx, mqtt_client_id="gw-crash-test")
    gw = Gateway(settings)
    spool = settings.spool_dir / "influx"
    shutil.rmtree(spool)
    spool.write_text("not a directory")  # the spool cannot take a batch: nothing becomes durable
    gw.start()
    gw.mqtt.subscribed.wait(20)
    while True:
        progress.write_text(str(gw.metrics.get("anxin_messages_total", profile="zigbee2mqtt-smoke")))
        time.sleep(0.05)
""")


def test_unacknowledged_messages_are_redelivered_after_a_crash(tmp_path: Path, mosquitto: MosquittoServer,
                                                               influx: InfluxServer) -> None:
    n = 200
    progress = tmp_path / "progress"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    crashing = subprocess.Popen([sys.executable, "-c", CRASHING_GATEWAY, str(tmp_path / "crash"), str(mosquitto.port),
                                 f"http://127.0.0.1:{free_port()}", str(progress)], env=env)
    try:
        wait_for(lambda: progress.exists(), timeout=30, what="crashing gateway subscribed")
        base_ms = int(time.time() * 1000) - n
        with Publisher(mosquitto.port) as pub:
            for i in range(n):
                body = {"smoke": False, "battery": i % 100, "last_seen": base_ms + i}
                pub.publish(f"zigbee2mqtt/dev-{i % 20}", json.dumps(body).encode())
        wait_for(lambda: progress.read_text() == str(float(n)), timeout=30, what="all messages received")
        time.sleep(0.5)  # a flush attempt has failed by now
    finally:
        crashing.send_signal(signal.SIGKILL)
        crashing.wait(10)

    settings = gateway_settings(tmp_path / "second", mqtt_port=mosquitto.port, influx_url=influx.url,
                                mqtt_client_id="gw-crash-test")
    with running_gateway(settings) as gw:
        wait_for(lambda: gw.metrics.get("anxin_messages_total", profile="zigbee2mqtt-smoke") >= n, timeout=30,
                 what="redelivery")
        assert gw.drain(20)
    rows = influx.query("anxin", "SELECT value, device_id FROM battery")
    assert sorted((r["device_id"], r["value"]) for r in rows) == sorted((f"dev-{i % 20}", i % 100) for i in range(n))
