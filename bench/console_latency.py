"""Console latency (h-board, issue 8), not a test:

(a) MQTT publish of a panic press -> its incident in the open live feed (SSE) of a logged-in contractor,
    p50/p99, under the alarm-latency bench's telemetry load: a private mosquitto and influxd, `anxin
    gateway` in its own processes, the telemetry generator of bench/alarm_latency.py in another, and
    this process pressing SOS buttons and reading the feed with httpx (same clock).
(b) incident list p95 with --incidents (default 100,000) incidents in the database (inserted in bulk
    before the gateway starts): `GET /api/v1/incidents?open_only=false` and the board's own query
    (`GET /api/v1/board`), for an administrator (everything) and for a contractor scoped to a few of the
    --institutions institutions, measured after (a) when the telemetry has stopped.

    python -m bench.console_latency [--presses 300] [--interval 0.1] [--telemetry-rate 10000]
        [--incidents 100000] [--requests 200] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, insert, text

from alerting.models import Delivery, EscalationStep, Incident, TimelineEntry
from anxin.db import init_db, make_engine
from api.models import Role
from api.security import add_user
from program.registry_file import import_registry
from tests.servers import free_port, stop_process, wait_port
from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer
from tests.servers.postgres import PostgresServer
from tests.servers.webhook import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-123"
PRESS = b'{"action":"emergency","battery":90}'
TYPES = ["alarm.panic", "alarm.smoke", "fault.battery_low", "env.co2_high", "device.offline", "alarm.door"]
CHUNK = 10_000


@dataclass
class FeedReader:
    """Reads a logged-in user's live feed in a thread; notes when each device's incident first arrived."""

    base: str
    cookies: httpx.Cookies
    opened: dict[str, float] = field(default_factory=dict)  # device -> time.time() of arrival
    connected: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    error: str = ""

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base, cookies=self.cookies, timeout=httpx.Timeout(10, read=None)) as c, \
                    c.stream("GET", "/api/v1/feed") as r:
                r.raise_for_status()
                self.connected.set()
                event = ""
                for line in r.iter_lines():
                    if self.stop.is_set():
                        return
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "incident":
                        at = time.time()
                        data = json.loads(line[6:])
                        if data["entry"]["action"] == "opened":
                            self.opened.setdefault(data["incident"]["device_id"], at)
        except Exception as exc:  # reported by the main thread
            self.error = f"{exc.__class__.__name__}: {exc}"
            self.connected.set()


def registry(hook: str, institutions: int, presses: int) -> dict[str, Any]:
    insts = [{"id": f"bench-{i:03d}", "name": f"厦门基准托育园{i:03d}", "district": "思明区"}
             for i in range(institutions)]
    return {
        "districts": [{"name": "思明区", "name_en": "Siming"}],
        "institutions": insts,
        "devices": [{"id": f"sos-{i:04d}", "institution": "bench-000", "profile": "zigbee2mqtt-sos-button"}
                    for i in range(presses)],
        "contractors": [{"id": "ct-bench", "name": "基准安保", "institutions": [x["id"] for x in insts[:3]]}],
        "contacts": [{"id": "police", "role": "police", "district": "思明区", "webhook_url": f"{hook}/police"},
                     {"id": "contractor", "role": "contractor", "institution": "bench-000",
                      "webhook_url": f"{hook}/contractor"}],
    }


def bulk_incidents(engine: Engine, n: int, institutions: int, open_share: float) -> int:
    """``n`` incidents spread over the institutions (most resolved, ``open_share`` open), each with its
    timeline; the open ones with a sent escalation step and a delivery. Returns how many are open."""
    now = datetime.now(UTC)
    every = max(1, round(1 / open_share)) if open_share > 0 else n + 1
    open_count = 0
    with engine.begin() as conn:
        for start in range(0, n, CHUNK):
            incidents, timeline, steps, deliveries = [], [], [], []
            for i in range(start + 1, min(n, start + CHUNK) + 1):
                inst = f"bench-{i % institutions:03d}"
                device = f"dev-{i % institutions:03d}-{i % 40:02d}"
                type_ = TYPES[i % len(TYPES)]
                opened = now - timedelta(seconds=(n - i) * 30)
                is_open = i % every == 0
                open_count += is_open
                incidents.append({
                    "id": i, "open_key": f"{inst}|{device}|{type_}|{i}" if is_open else None, "institution_id": inst,
                    "device_id": device, "type": type_, "severity": "critical" if type_ in TYPES[:2] else "warning",
                    "state": "triggered" if is_open else "resolved", "drill": False, "false_alarm": False,
                    "closure_code": None if is_open else "real", "route": "bench", "policy": "bench", "fallback": "",
                    "event_count": 1, "opened_at": opened, "last_event_at": opened, "acknowledged_at": None,
                    "dispatched_at": None, "resolved_at": None if is_open else opened + timedelta(minutes=5),
                    "reviewed_at": None})
                timeline.append({"incident_id": i, "at": opened, "action": "opened", "actor": "system", "channel": "",
                                 "detail": {}})
                if is_open:
                    steps.append({"id": i, "incident_id": i, "step_no": 0, "due_at": opened, "roles": ["police"],
                                  "status": "sent", "claimed_by": "", "rounds": 1, "sent_at": opened})
                    deliveries.append({"incident_id": i, "step_id": i, "contact_id": "police", "channel": "webhook",
                                       "address": "http://127.0.0.1:9/police", "attempt": 1, "at": opened, "ok": True,
                                       "detail": "", "status": "delivered", "key": f"{i}/0/police",
                                       "answered_at": opened})
                else:
                    timeline.append({"incident_id": i, "at": opened + timedelta(minutes=5), "action": "resolved",
                                     "actor": "bench", "channel": "api", "detail": {"closure_code": "real"}})
            conn.execute(insert(Incident), incidents)
            conn.execute(insert(TimelineEntry), timeline)
            if steps:
                conn.execute(insert(EscalationStep), steps)
                conn.execute(insert(Delivery), deliveries)
        if engine.dialect.name == "postgresql":  # explicit ids: move the sequences past them
            for table in ("incidents", "escalation_steps"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))
    return open_count


def login(base: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30, follow_redirects=False)
    r = client.post("/login", data={"username": username, "password": PASSWORD})
    if r.status_code != 303:
        raise SystemExit(f"login as {username} failed: HTTP {r.status_code}")
    return client


def percentiles(xs: list[float]) -> str:
    if not xs:
        return "no samples"
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=100, method="inclusive") if len(xs) > 1 else xs * 99
    return f"p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, p99 {q[98]:.1f} ms, max {xs[-1]:.1f} ms (n={len(xs)})"


def time_requests(client: httpx.Client, path: str, n: int) -> tuple[list[float], int]:
    out, rows = [], 0
    for _ in range(n):
        start = time.perf_counter()
        r = client.get(path)
        out.append((time.perf_counter() - start) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"GET {path}: HTTP {r.status_code} {r.text[:200]}")
        body = r.json()
        rows = len(body["incidents"] if isinstance(body, dict) else body)
    return out, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presses", type=int, default=300)
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between presses")
    ap.add_argument("--telemetry-rate", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--incidents", type=int, default=100_000)
    ap.add_argument("--open-share", type=float, default=0.002, help="share of the bulk incidents still open")
    ap.add_argument("--institutions", type=int, default=50)
    ap.add_argument("--requests", type=int, default=200, help="requests per list measurement")
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL instead of the default SQLite")
    args = ap.parse_args()
    from bench.alarm_latency import _stages, _telemetry_drain  # the same load as the alarm-latency bench

    with tempfile.TemporaryDirectory(prefix="anxin-console-") as tmp, WebhookReceiver() as hook:
        work = Path(tmp)
        mosq = MosquittoServer(work / "mosquitto").start()
        influx = InfluxServer(work / "influx").start()
        pg = PostgresServer(fsync=True).start() if args.postgres else None
        db = pg.url if pg is not None else f"sqlite:///{work}/anxin.db"
        engine = make_engine(db)
        sessions = init_db(engine)
        import_registry(sessions, registry(hook.url, args.institutions, args.presses))
        with sessions.begin() as s:
            add_user(s, "contractor", PASSWORD, Role.CONTRACTOR, contractor_id="ct-bench")
        t0 = time.perf_counter()
        open_count = bulk_incidents(engine, args.incidents, args.institutions, args.open_share)
        print(f"inserted {args.incidents:,} incidents ({open_count:,} open) in {time.perf_counter() - t0:.1f} s")
        engine.dispose()
        http_port = free_port()
        token = secrets.token_urlsafe(18)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ANXIN_DATABASE_URL": db, "ANXIN_MQTT_PORT": str(mosq.port),
               "ANXIN_INFLUX_URL": influx.url, "ANXIN_SPOOL_DIR": str(work / "spool"),
               "ANXIN_HTTP_PORT": str(http_port), "ANXIN_MQTT_WORKERS": str(args.workers),
               "ANXIN_ALERTING_TICK_S": "0.05", "ANXIN_ALERTING_SECRET": secrets.token_urlsafe(32),
               "ANXIN_API_TOKENS": f"bench:{token}"}
        log = (work / "gateway.log").open("wb")
        gateway = subprocess.Popen([sys.executable, "-m", "program.cli", "gateway"], env=env, cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=log)
        base = f"http://127.0.0.1:{http_port}"
        generator = None
        reader: FeedReader | None = None
        pressed: dict[str, float] = {}
        lists: list[tuple[str, list[float], int]] = []
        stages: dict[str, dict[str, float]] = {"received": {}, "opened": {}}
        try:
            wait_port(http_port, 120)
            time.sleep(3)  # workers subscribe
            contractor = login(base, "contractor")
            reader = FeedReader(base, contractor.cookies)
            threading.Thread(target=reader.run, name="feed-reader", daemon=True).start()
            if not reader.connected.wait(30) or reader.error:
                raise SystemExit(f"the live feed did not open: {reader.error or 'timeout'}")
            seconds = args.presses * args.interval + 10
            code = (f"from bench.alarm_latency import telemetry_generator as g; "
                    f"g({mosq.port}, {args.telemetry_rate}, {seconds})")
            generator = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE)
            time.sleep(3)  # telemetry is flowing
            pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-console-presser")
            pub.connect("127.0.0.1", mosq.port)
            pub.loop_start()
            devices = [f"sos-{i:04d}" for i in range(args.presses)]
            for d in devices:
                pressed[d] = time.time()
                pub.publish(f"zigbee2mqtt/{d}", PRESS, qos=1)
                time.sleep(args.interval)
            deadline = time.time() + 60
            while len(reader.opened) < len(devices) and time.time() < deadline:
                time.sleep(0.1)
            pub.loop_stop()
            out, _ = generator.communicate(timeout=args.presses * args.interval + 120)
            telemetry = json.loads(out.decode().strip().splitlines()[-1])
            drained_s, stored = _telemetry_drain(influx)
            reader.stop.set()

            admin = httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"})
            for who, client in (("admin", admin), ("contractor (3 institutions)", contractor)):
                for path in ("/api/v1/incidents?open_only=false", "/api/v1/board"):
                    client.get(path)  # warm up
                    ms, rows = time_requests(client, path, args.requests)
                    lists.append((f"{who} GET {path}", ms, rows))
            admin.close()
            contractor.close()
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
    assert reader is not None
    latencies = [(reader.opened[d] - pressed[d]) * 1000 for d in pressed if d in reader.opened]
    print(f"presses: {len(pressed)}, seen in the contractor's live feed: {len(latencies)}, "
          f"missing: {len(pressed) - len(latencies)}")
    print(f"telemetry meanwhile: {telemetry['sent']:,} messages at {telemetry['rate']:,.0f} msg/s (QoS 1); ingest "
          f"backlog cleared {drained_s:.1f} s after publishing stopped ({stored:,} humidity points stored)")
    print(f"publish -> contractor's SSE stream: {percentiles(latencies)}")
    received, opened, seen = stages["received"], stages["opened"], reader.opened
    for name, before, after in (("publish -> gateway receipt", pressed, received),
                                ("receipt -> incident opened", received, opened),
                                ("incident opened -> in the SSE stream", opened, seen)):
        ms = [(after[d] - before[d]) * 1000 for d in pressed if d in before and d in after]
        print(f"  {name}: {percentiles(ms)}")
    print(f"incident lists with {args.incidents:,} incidents ({'PostgreSQL' if args.postgres else 'SQLite'}), "
          f"{args.requests} sequential requests each, telemetry stopped:")
    for name, ms, rows in lists:
        print(f"  {name} ({rows} rows): {percentiles(ms)}")


if __name__ == "__main__":
    main()
