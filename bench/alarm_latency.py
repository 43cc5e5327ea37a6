"""Alarm latency under load: MQTT publish of a panic press -> first notification at the police webhook.

A private mosquitto and influxd; the gateway runs as deployed (`anxin gateway`, one process per core)
in its own processes; a telemetry generator (another process) publishes real-format readings at a
fixed rate, QoS 1, the whole time; this process presses N different SOS buttons one after another and
timestamps each press and each arrival at a loopback webhook (same clock). Prints p50/p95/p99/max.

    python -m bench.alarm_latency [--presses 1000] [--telemetry-rate 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from alerting.models import Incident
from anxin.db import EventRecord, init_db, make_engine
from bench.ingest_throughput import workload
from program.registry_file import import_registry
from tests.servers import free_port, stop_process, wait_port
from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer
from tests.servers.postgres import PostgresServer
from tests.servers.webhook import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent


def telemetry_generator(port: int, rate: int, seconds: float) -> None:
    """Publish the ingest benchmark's workload at ``rate`` msg/s, QoS 1 (runs in its own process)."""
    import gmqtt

    msgs, _ = workload(50_000, 2000, seed=11)

    async def run() -> None:
        client = gmqtt.Client(f"bench-telemetry-{uuid.uuid4().hex[:6]}")
        await client.connect("127.0.0.1", port)
        start = time.perf_counter()
        sent = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                topic, payload = msgs[sent % len(msgs)]
                try:
                    client.publish(topic, payload, qos=1)
                except OverflowError:  # 65,535 unacknowledged: the broker is behind, wait for it
                    break
                sent += 1
            await asyncio.sleep(0.005)
        print(json.dumps({"sent": sent, "rate": sent / (time.perf_counter() - start)}), flush=True)
        await client.disconnect()

    asyncio.run(run())


def _telemetry_drain(influx: InfluxServer, timeout: float = 180.0) -> tuple[float, int]:
    """Seconds after the generator stopped until the stored telemetry stops growing (the ingest workers'
    backlog), and how many humidity points were stored (every workload message carries one)."""
    start = time.monotonic()
    last, stable_since = -1, start
    while time.monotonic() - start < timeout:
        rows = influx.query("anxin", 'SELECT count("value") FROM "humidity"')
        count = int(rows[0]["count"]) if rows else 0
        if count != last:
            last, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since >= 3.0:
            break
        time.sleep(0.5)
    return stable_since - start, last


def _stages(db: str) -> dict[str, dict[str, float]]:
    """Per device, when the gateway received the press and when it opened the incident."""
    engine = make_engine(db)
    with engine.connect() as conn:
        received = conn.execute(select(EventRecord.device_id, EventRecord.received_at)
                                .where(EventRecord.type == "alarm.panic")).all()
        opened = conn.execute(select(Incident.device_id, Incident.opened_at)).all()
    engine.dispose()
    out: dict[str, dict[str, float]] = {"received": {}, "opened": {}}
    for name, rows in (("received", received), ("opened", opened)):
        for device, at in rows:
            out[name].setdefault(device, at.timestamp())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presses", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=0.04, help="seconds between presses")
    ap.add_argument("--telemetry-rate", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL instead of the default SQLite")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="anxin-latency-") as tmp, WebhookReceiver() as hook:
        work = Path(tmp)
        mosq = MosquittoServer(work / "mosquitto").start()
        influx = InfluxServer(work / "influx").start()
        pg = PostgresServer(fsync=True).start() if args.postgres else None
        db = pg.url if pg is not None else f"sqlite:///{work}/anxin.db"
        engine = make_engine(db)
        devices = [f"sos-{i:04d}" for i in range(args.presses)]
        import_registry(init_db(engine), {
            "institutions": [{"id": "xm-001", "name": "厦门市思明区小太阳托育园", "district": "思明区"}],
            "devices": [{"id": d, "institution": "xm-001", "profile": "zigbee2mqtt-sos-button"} for d in devices],
            "contacts": [{"id": "police", "role": "police", "district": "思明区", "webhook_url": f"{hook.url}/police"},
                         {"id": "contractor", "role": "contractor", "institution": "xm-001",
                          "webhook_url": f"{hook.url}/contractor"}],
        })
        engine.dispose()
        http_port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ANXIN_DATABASE_URL": db, "ANXIN_MQTT_PORT": str(mosq.port),
               "ANXIN_INFLUX_URL": influx.url, "ANXIN_SPOOL_DIR": str(work / "spool"),
               "ANXIN_HTTP_PORT": str(http_port), "ANXIN_MQTT_WORKERS": str(args.workers),
               "ANXIN_ALERTING_TICK_S": "0.05", "ANXIN_ALERTING_SECRET": secrets.token_urlsafe(32),
               "ANXIN_API_TOKENS": f"bench:{secrets.token_urlsafe(18)}"}  # the gateway requires both
        log = (work / "gateway.log").open("wb")
        gateway = subprocess.Popen([sys.executable, "-m", "program.cli", "gateway"], env=env, cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=log)
        generator = None
        try:
            wait_port(http_port, 60)
            time.sleep(3)  # workers subscribe
            seconds = args.presses * args.interval + 10
            code = (f"from bench.alarm_latency import telemetry_generator as g; "
                    f"g({mosq.port}, {args.telemetry_rate}, {seconds})")
            generator = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE)
            time.sleep(3)  # telemetry is flowing
            pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-presser")
            pub.connect("127.0.0.1", mosq.port)
            pub.loop_start()
            pressed: dict[str, float] = {}
            for d in devices:
                pressed[d] = time.time()
                pub.publish(f"zigbee2mqtt/{d}", b'{"action":"emergency","battery":90}', qos=1)
                time.sleep(args.interval)
            deadline = time.time() + 60
            while len([r for r in hook.received if r.path == "/police"]) < len(devices) and time.time() < deadline:
                time.sleep(0.1)
            pub.loop_stop()
            out, _ = generator.communicate(timeout=120)
            telemetry = json.loads(out.decode().strip().splitlines()[-1])
            drained_s, stored = _telemetry_drain(influx)
        finally:
            if generator is not None and generator.poll() is None:
                generator.kill()
            stop_process(gateway, 60)
            log.close()
            influx.stop()
            mosq.stop()
        stages = _stages(db)
        if pg is not None:
            pg.stop()
        first: dict[str, float] = {}
        for r in hook.received:
            if r.path == "/police":
                device = r.json()["device"]
                first.setdefault(device, r.at)
        latencies = sorted((first[d] - pressed[d]) * 1000 for d in devices if d in first)
    missing = len(devices) - len(latencies)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    print(f"presses: {len(devices)}, reached police: {len(latencies)}, missing: {missing}")
    print(f"telemetry meanwhile: {telemetry['sent']:,} messages at {telemetry['rate']:,.0f} msg/s (QoS 1); "
          f"ingest workers' backlog cleared {drained_s:.1f} s after publishing stopped "
          f"({stored:,} humidity points stored; ChirpStack repeats of one frame count once)")
    print(f"publish -> police webhook latency: p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, p99 {q[98]:.1f} ms, "
          f"max {latencies[-1]:.1f} ms")
    received, opened = stages["received"], stages["opened"]
    parts = [
        ("publish -> gateway receipt", [received[d] - pressed[d] for d in devices if d in received]),
        ("receipt -> incident opened", [opened[d] - received[d] for d in devices if d in received and d in opened]),
        ("incident opened -> webhook", [first[d] - opened[d] for d in devices if d in opened and d in first]),
    ]
    for name, secs in parts:
        xs = sorted(x * 1000 for x in secs)
        qs = statistics.quantiles(xs, n=100)
        print(f"  {name}: p50 {qs[49]:.1f} ms, p99 {qs[98]:.1f} ms, max {xs[-1]:.1f} ms")


if __name__ == "__main__":
    main()
