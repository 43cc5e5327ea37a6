"""`anxin gateway` as a user runs it: a separate process configured by environment variables, its
registry imported with `anxin registry-import`, watched through /readyz; plus real-format load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from tests.harness import wait_for
from tests.servers import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "chaos-test-secret-0123456789abcdef0123456789"


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class DeployedGateway:
    """One `anxin gateway` process. ``env`` adds to / overrides the base settings."""

    def __init__(self, workdir: Path, *, mqtt_port: int, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.env = {
            **os.environ, "PYTHONPATH": str(ROOT),
            "ANXIN_DATABASE_URL": f"sqlite:///{workdir}/anxin.db",
            "ANXIN_MQTT_PORT": str(mqtt_port),
            "ANXIN_MQTT_CLIENT_ID": f"gw-{uuid.uuid4().hex[:8]}",
            "ANXIN_HTTP_PORT": str(self.http_port),
            "ANXIN_SPOOL_DIR": str(workdir / "spool"),
            "ANXIN_ALERTING_SECRET": SECRET,
            "ANXIN_API_TOKENS": "chaos:chaos-api-token-0123456789abcdef",
            "ANXIN_DUPLICATE_WINDOW_S": "0",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "gateway.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "program.cli", *args], env=self.env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=120, check=False)

    def import_registry(self, registry: dict[str, Any]) -> None:
        path = self.workdir / "registry.yaml"
        path.write_text(yaml.safe_dump(registry, allow_unicode=True), encoding="utf-8")
        done = self.cli("registry-import", str(path))
        assert done.returncode == 0, done.stderr

    def start(self) -> DeployedGateway:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "program.cli", "gateway"], env=self.env,
                                         cwd=self.workdir, stdout=log, stderr=log)
        wait_port(self.http_port, 60)
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_for(self.ready, timeout=timeout, what=f"gateway ready (log: {self.log})")

    def health(self) -> dict[str, Any]:
        try:
            return dict(httpx.get(f"{self.url}/healthz", timeout=5).json())
        except (httpx.HTTPError, ValueError):
            return {"status": "unreachable"}

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill(self) -> set[int]:
        """kill -9 the gateway process; returns the pids of the processes it had started."""
        assert self.proc is not None
        children = children_of(self.proc.pid)
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        return children

    def stop_quietly(self) -> None:
        if self.proc is not None:
            children = children_of(self.proc.pid)
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            for pid in children:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


@contextmanager
def deployed(workdir: Path, *, mqtt_port: int, registry: dict[str, Any] | None = None,
             env: dict[str, str] | None = None) -> Iterator[DeployedGateway]:
    gw = DeployedGateway(workdir, mqtt_port=mqtt_port, env=env)
    if registry is not None:
        gw.import_registry(registry)
    try:
        yield gw
    finally:
        gw.stop_quietly()


def chaos_registry(police_url: str, *, buttons: int, everyone: bool = False) -> dict[str, Any]:
    """One institution with ``buttons`` panic buttons (generic JSON profile) and its district's police;
    with ``everyone`` also its contractor, director and the duty desk."""
    registry: dict[str, Any] = {
        "institutions": [{"id": "xm-001", "name": "厦门市思明区小太阳托育园", "district": "思明区"}],
        "devices": [{"id": f"sos-{i}", "institution": "xm-001", "profile": "generic-json", "room": "前台"}
                    for i in range(buttons)],
        "contacts": [{"id": "police-siming", "role": "police", "district": "思明区", "name": "思明公安分局值班室",
                      "webhook_url": f"{police_url}/police", "webhook_secret": "s"}],
    }
    if everyone:
        registry["contacts"] += [
            {"id": "contractor-a", "role": "contractor", "institution": "xm-001", "name": "安保监控中心",
             "webhook_url": f"{police_url}/contractor"},
            {"id": "staff-a", "role": "institution", "institution": "xm-001", "name": "园长",
             "webhook_url": f"{police_url}/staff"},
            {"id": "duty", "role": "duty", "name": "平台值班台", "webhook_url": f"{police_url}/duty"}]
    return registry


class Load:
    """Devices publishing real-format generic-JSON messages at QoS 1 the way devices do: a persistent
    client that reconnects and resends what the broker has not acknowledged. Readings carry a device
    timestamp, unique per message, so each is one point in the time-series store."""

    def __init__(self, port: int, *, readings: int, presses: int, rate: float = 2000.0, sensors: int = 20) -> None:
        self.port, self.readings, self.presses, self.rate, self.sensors = port, readings, presses, rate, sensors
        self.sent = 0
        self.done = threading.Event()
        self.t0_ms = int(time.time() * 1000) - 3_600_000  # an hour ago: within the plausible window
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"devices-{uuid.uuid4().hex[:8]}",
                                  clean_session=False)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 1)
        self._acked: set[int] = set()  # message ids the broker acknowledged (PUBACK)
        self._mids: list[int] = []
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self._acked.add(mid)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def messages(self) -> Iterator[tuple[str, str]]:
        every = max(1, self.readings // max(1, self.presses))
        press = 0
        for i in range(self.readings):
            ts = self.t0_ms + i
            yield f"anxin/env-{i % self.sensors}/up", f'{{"ts": {ts}, "temperature": {20 + (i % 100) / 10}}}'
            if i % every == every - 1 and press < self.presses:
                yield f"anxin/sos-{press}/up", f'{{"ts": {ts}, "panic": true}}'
                press += 1

    def start(self) -> Load:
        self._thread.start()
        return self

    def _run(self) -> None:
        start = time.monotonic()
        for n, (topic, payload) in enumerate(self.messages()):
            # While the broker is away paho keeps the message and sends it after reconnecting.
            self._mids.append(self.client.publish(topic, payload, qos=1).mid)
            self.sent = n + 1
            ahead = start + n / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        self.done.set()

    def wait_acknowledged(self, timeout: float = 120.0) -> None:
        """Every message accepted by the broker (PUBACK), resent across reconnects as needed."""
        assert self.done.wait(timeout), "the load did not finish publishing"
        wait_for(lambda: self._acked.issuperset(self._mids), timeout=timeout, what="every message acknowledged")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def police_incidents(received: list[Any]) -> list[int]:
    """Incident ids of the first escalation step's notifications to the police (one per press when all is
    well; a later step, due when nobody acknowledges, is a new notification, not a repeat)."""
    return [int(r.json()["incident_id"]) for r in received
            if r.path == "/police" and r.headers.get("X-Anxin-Delivery-Key", "").split("/")[1:2] == ["0"]]
