"""Ingest throughput: the gateway (decode + InfluxDB) against a bare MQTT client, same backlog, same run.

Each consumer has a persistent session on a private mosquitto; the same N real-format messages are
queued for each while it is offline, then each drains its backlog alone (so they do not compete for the
2 cores). The gateway runs twice: one process, and one per core (extra ingest workers in the same
shared subscription group, as deployed with ANXIN_MQTT_WORKERS). Rates are messages per second from
connect until the last message is received (bare clients, QoS 1 auto-ack: gmqtt, the library the
gateway uses, and paho-mqtt, the reference client) or decoded and stored (gateway: every message's
points queryable in InfluxDB, acknowledged after that). Prints the rates and the ratios.

    python -m bench.ingest_throughput [--messages 200000] [--devices 2000] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import gmqtt
import httpx
import paho.mqtt.client as mqtt
from gmqtt.mqtt.constants import MQTTv50
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from anxin.config import Settings
from anxin.db import init_db, make_engine
from gateway.simulator import chirpstack_uplink, em300_th_frame
from gateway.workers import (
    main_ingests,
    start_extra_workers,
    stop_workers,
    worker_indexes,
    worker_subscribed,
)
from program.registry_file import import_registry
from program.system import Anxin as Gateway
from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer

TOPICS = ["zigbee2mqtt/+", "application/+/device/+/event/up"]


def workload(n: int, devices: int, seed: int = 7) -> tuple[list[tuple[str, bytes]], int]:
    """A mix of real formats: zigbee2mqtt temperature/humidity (50 %) and air boxes (30 %),
    ChirpStack uplinks with Milesight EM300-TH binary frames (20 %). Returns messages, expected points."""
    r = random.Random(seed)
    msgs: list[tuple[str, bytes]] = []
    points = 0
    for i in range(n):
        dev = i % devices
        kind = dev % 10
        if kind < 5:
            body: dict[str, Any] = {"battery": r.randint(20, 100), "humidity": round(r.uniform(30, 70), 1),
                                    "temperature": round(r.uniform(18, 28), 1), "linkquality": r.randint(30, 200)}
            msgs.append((f"zigbee2mqtt/th-{dev}", json.dumps(body).encode()))
            points += 4
        elif kind < 8:
            body = {"co2": r.randint(400, 1500), "formaldehyd": r.randint(5, 120), "voc": r.randint(5, 80),
                    "temperature": round(r.uniform(18, 28), 1), "humidity": round(r.uniform(30, 70), 1),
                    "linkquality": r.randint(30, 200)}
            msgs.append((f"zigbee2mqtt/air-{dev}", json.dumps(body).encode()))
            points += 6
        else:
            topic, payload = chirpstack_uplink(f"24e1240000{dev:06x}", em300_th_frame(
                r.randint(20, 100), r.uniform(18, 28), r.uniform(30, 70)), i)
            msgs.append((topic, payload))
            points += 5  # battery, temperature, humidity, rssi, snr
    return msgs, points


def registry(devices: int) -> dict[str, Any]:
    devs = []
    for dev in range(devices):
        kind = dev % 10
        if kind < 5:
            devs.append({"id": f"th-{dev}", "institution": f"inst-{dev % 50}", "profile": "zigbee2mqtt-temp-humidity"})
        elif kind < 8:
            devs.append({"id": f"air-{dev}", "institution": f"inst-{dev % 50}", "profile": "zigbee2mqtt-air-quality"})
        else:
            devs.append({"id": f"24e1240000{dev:06x}", "institution": f"inst-{dev % 50}",
                         "profile": "milesight-em300-th"})
    return {"institutions": [{"id": f"inst-{i}", "name": f"托育机构{i}"} for i in range(50)], "devices": devs}


def publish_all(port: int, msgs: list[tuple[str, bytes]]) -> float:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    t0 = time.perf_counter()
    window = 20_000  # packet ids are 16-bit: keep fewer than 65,535 unacknowledged
    for start in range(0, len(msgs), window):
        infos = [client.publish(t, p, qos=1) for t, p in msgs[start:start + window]]
        for info in infos:
            info.wait_for_publish(120)
    elapsed = time.perf_counter() - t0
    client.loop_stop()
    client.disconnect()
    return elapsed


class PahoBare:
    """Baseline: a paho-mqtt client that only counts messages (QoS 1, automatic ack)."""

    name = "bare paho-mqtt client"

    def __init__(self, port: int, client_id: str) -> None:
        self.port = port
        self.client_id = client_id
        self.count = 0
        self.target = 0
        self.done = threading.Event()
        self.subscribed = threading.Event()

    def _client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        c.on_message = self._on_message
        c.on_subscribe = lambda *_: self.subscribed.set()
        return c

    def _on_message(self, *_: Any) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set()

    def _props(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 20000
        return props

    def create_session(self) -> None:
        c = self._client()
        c.connect("127.0.0.1", self.port, clean_start=True, properties=self._props())
        c.loop_start()
        c.subscribe([(t, 1) for t in TOPICS])
        assert self.subscribed.wait(10)
        c.disconnect()
        c.loop_stop()

    def drain(self, n: int) -> float:
        self.target = n
        c = self._client()
        t0 = time.perf_counter()
        c.connect("127.0.0.1", self.port, clean_start=False, properties=self._props())
        c.loop_start()
        if not self.done.wait(600):
            raise RuntimeError(f"bare paho client got {self.count}/{n}")
        elapsed = time.perf_counter() - t0
        c.disconnect()
        c.loop_stop()
        return elapsed


class GmqttBare:
    """Baseline: a gmqtt client (the library the gateway uses) that only counts messages."""

    name = "bare gmqtt client"

    def __init__(self, port: int, client_id: str) -> None:
        self.port = port
        self.client_id = client_id

    async def _run(self, n: int | None) -> float:
        done = asyncio.Event()
        count = 0

        def on_message(*_: Any) -> int:
            nonlocal count
            count += 1
            if count == n:
                done.set()
            return 0

        c = gmqtt.Client(self.client_id, clean_session=False, session_expiry_interval=3600, receive_maximum=20000)
        c.on_message = on_message
        t0 = time.perf_counter()
        await c.connect("127.0.0.1", self.port, version=MQTTv50)
        if n is None:
            c.subscribe([gmqtt.Subscription(t, qos=1) for t in TOPICS])
            await asyncio.sleep(0.5)
        else:
            await asyncio.wait_for(done.wait(), 600)
        elapsed = time.perf_counter() - t0
        await c.disconnect()
        return elapsed

    def create_session(self) -> None:
        asyncio.run(self._run(None))

    def drain(self, n: int) -> float:
        return asyncio.run(self._run(n))


def gateway_settings(work: Path, mqtt_port: int, influx_url: str, name: str, workers: int, group: str) -> Settings:
    return Settings(
        database_url=f"sqlite:///{work}/{name}.db", mqtt_port=mqtt_port, mqtt_client_id=name,
        mqtt_shared_group=group, mqtt_workers=workers, influx_url=influx_url, influx_database=name,
        spool_dir=work / f"spool-{name}", batch_size=5000, flush_interval_s=0.2,
    )


class GatewayRun:
    """The gateway as deployed: one process, or a main process (HTTP, alerting) and N ingest workers."""

    def __init__(self, settings: Settings, devices: int) -> None:
        self.settings = settings
        engine = make_engine(settings.database_url)
        import_registry(init_db(engine), registry(devices))
        engine.dispose()

    def start(self) -> tuple[Gateway, list[Any]]:
        gw = Gateway(self.settings)
        gw.start(mqtt=main_ingests(self.settings))
        return gw, start_extra_workers(self.settings)

    def create_sessions(self) -> None:
        gw, workers = self.start()
        if workers:  # separate processes (at nice 10: slow to start on a busy machine); they report it
            deadline = time.monotonic() + 300
            while not all(worker_subscribed(self.settings, i) for i in worker_indexes(self.settings)):
                if time.monotonic() > deadline:
                    raise RuntimeError("ingest workers did not subscribe in 300 s")
                time.sleep(0.2)
        else:
            assert gw.mqtt.subscribed.wait(10)
        stop_workers(workers)
        gw.stop()

    def drain(self, influx: InfluxServer, n: int) -> float:
        """Seconds from start until all n messages are points in InfluxDB."""
        t0 = time.perf_counter()
        gw, workers = self.start()
        try:
            while stored_messages(influx, self.settings.influx_database) < n:
                if time.perf_counter() - t0 > 600:
                    raise RuntimeError("gateway did not finish in 600 s")
                time.sleep(0.2)
            return time.perf_counter() - t0
        finally:
            stop_workers(workers)
            gw.stop()


_poller = httpx.Client(timeout=30)  # one connection for the polls: a new client per poll costs the gateway CPU


def stored_messages(influx: InfluxServer, db: str) -> int:
    # every message of the workload carries exactly one temperature reading
    resp = _poller.post(f"{influx.url}/query", params={"db": db}, data={"q": "SELECT count(value) FROM temperature"})
    series = resp.json()["results"][0].get("series")  # none (or an error) until the database has points
    return int(series[0]["values"][0][1]) if series else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="ingest processes of the multi run")
    args = ap.parse_args()
    n = args.messages
    msgs, expected_points = workload(n, args.devices)
    with tempfile.TemporaryDirectory(prefix="anxin-bench-") as tmp:
        work = Path(tmp)
        mosq = MosquittoServer(work / "mosquitto").start()
        influx = InfluxServer(work / "influx").start()
        try:
            bares: list[GmqttBare | PahoBare] = [GmqttBare(mosq.port, "bench-bare-gmqtt"),
                                                PahoBare(mosq.port, "bench-bare-paho")]
            # The default (no shared group): one process, or every worker reading all and keeping its hash
            # partition; and workers in a shared group, which spreads the load at the broker.
            w = args.workers
            variants = [("anxin gateway, 1 process", 1, "")]
            if w > 1:
                variants += [(f"anxin gateway, {w} workers, partitions", w, ""),
                             (f"anxin gateway, {w} workers, shared group", w, "g")]
            runs = {name: GatewayRun(gateway_settings(work, mosq.port, influx.url, f"gw{i}", workers,
                                                      f"{group}{i}" if group else ""), args.devices)
                    for i, (name, workers, group) in enumerate(variants)}
            for consumer in [*bares, *runs.values()]:
                consumer.create_sessions() if isinstance(consumer, GatewayRun) else consumer.create_session()

            pub_s = publish_all(mosq.port, msgs)
            print(f"queued {n:,} messages for each consumer in {pub_s:.1f}s")

            bare_rates = {b.name: n / b.drain(n) for b in bares}
            gw_rates = {}
            for name, run in runs.items():
                gw_rates[name] = n / run.drain(influx, n)
                print(f"{name}: {gw_rates[name]:,.0f} msg/s", flush=True)  # kept should a later run fail
            stored = {name: influx_points(influx, run.settings.influx_database) for name, run in runs.items()}
        finally:
            influx.stop()
            mosq.stop()
    for name, rate in gw_rates.items():
        ratios = ", ".join(f"{rate / b:.0%} of the {bn}" for bn, b in bare_rates.items())
        print(f"{name:40}: {rate:>9,.0f} msg/s, {rate * expected_points / n:>9,.0f} points/s ({ratios}); "
              f"points stored {stored[name]:,} of {expected_points:,}")
    for name, rate in bare_rates.items():
        print(f"{name:40}: {rate:>9,.0f} msg/s")


def influx_points(influx: InfluxServer, db: str) -> int:
    total = 0
    for metric in ("temperature", "humidity", "battery", "linkquality", "co2", "hcho", "tvoc_ppb", "rssi", "snr"):
        rows = influx.query(db, f"SELECT count(value) FROM {metric}")
        total += int(rows[0]["count"]) if rows else 0
    return total


if __name__ == "__main__":
    main()
