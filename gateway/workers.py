"""Extra MQTT ingest processes, so one gateway host uses all its cores.

Python runs one thread at a time per process; decoding at tens of thousands of messages per second
fills one core. With N > 1 workers, N ingest processes (own MQTT session in the same shared subscription group,
own spool directory) run beside the main process, which serves HTTP and runs the alerting engine.
The broker spreads the messages; every worker acknowledges only what it made durable.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing import resource_tracker
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import orjson

from anxin.config import Settings
from anxin.logging_setup import setup_logging
from anxin.metrics import MQTT_SUBSCRIBED, Snapshot

log = logging.getLogger(__name__)


METRICS_EVERY_S = 2.0


def metrics_path(settings: Settings, index: int) -> Path:
    return worker_settings(settings, index).spool_dir / "metrics.json"


def worker_indexes(settings: Settings) -> range:
    """1..N with N ingest workers; none when ANXIN_MQTT_WORKERS is 1 (the main process ingests)."""
    return range(1, settings.mqtt_workers + 1 if settings.mqtt_workers > 1 else 1)


def worker_subscribed(settings: Settings, index: int) -> bool:
    """True while worker ``index`` reports (freshly) that its session holds its subscriptions."""
    path = metrics_path(settings, index)
    try:
        if time.time() - path.stat().st_mtime > 3 * METRICS_EVERY_S:
            return False
        snapshot = orjson.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return any(name == MQTT_SUBSCRIBED and value == 1 for name, _help, value in snapshot.get("gauges", []))


def worker_snapshots(settings: Settings) -> list[tuple[dict[str, str], Snapshot]]:
    """The workers' latest metrics (written every METRICS_EVERY_S), labelled ``worker="<n>"``."""
    out: list[tuple[dict[str, str], Snapshot]] = []
    for index in worker_indexes(settings):
        with contextlib.suppress(OSError, ValueError):
            out.append(({"worker": str(index)}, orjson.loads(metrics_path(settings, index).read_bytes())))
    return out


def worker_settings(settings: Settings, index: int) -> Settings:
    """Settings of ingest worker ``index`` (1..N). Workers only ingest: alerting, whose alarm path must
    not wait for a decoding thread, stays in the main process."""
    return settings.model_copy(update={
        "mqtt_client_id": f"{settings.mqtt_client_id}-w{index}",
        "spool_dir": settings.spool_dir / f"worker-{index}",
        "alerting_enabled": False,
    })


def main_ingests(settings: Settings) -> bool:
    """With several workers the main process serves HTTP and alerting and leaves MQTT to them."""
    return settings.mqtt_workers == 1


def start_extra_workers(settings: Settings) -> list[BaseProcess]:
    """Start the ingest worker processes (none when ANXIN_MQTT_WORKERS is 1: the main process ingests)."""
    return [_spawn(settings, index) for index in worker_indexes(settings)]


def partition(settings: Settings, index: int) -> tuple[int, int] | None:
    """Without a shared group every worker subscribes to everything and keeps one hash partition of the
    topics; with one, the broker spreads the messages."""
    return None if settings.mqtt_shared_group else (index - 1, settings.mqtt_workers)


def _spawn(settings: Settings, index: int) -> BaseProcess:
    # A report from a worker that is gone must not count as its successor being subscribed.
    with contextlib.suppress(FileNotFoundError):
        metrics_path(settings, index).unlink()
    ctx = multiprocessing.get_context("spawn")  # no fork: threads and sockets do not survive it
    proc = ctx.Process(target=_worker_main, args=(settings.model_dump(), index, os.getpid()),
                       name=f"anxin-worker-{index}", daemon=True)
    proc.start()
    return proc


class WorkerSupervisor:
    """Starts a new worker in place of one that died. Its MQTT session (same client id) resumes where
    the dead one stopped: what that one had not acknowledged is delivered again, nothing is lost."""

    def __init__(self, settings: Settings, procs: list[BaseProcess], interval_s: float = 1.0) -> None:
        self._settings = settings
        self.procs = procs
        self.restarts = 0
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-supervisor", daemon=True)

    def start(self) -> WorkerSupervisor:
        self._thread.start()
        return self

    def snapshots(self) -> list[tuple[dict[str, str], Snapshot]]:
        return worker_snapshots(self._settings)

    def alive(self) -> int:
        return sum(p.is_alive() for p in self.procs)

    def subscribed(self) -> dict[int, bool]:
        """Per worker (1..N): alive and holding its subscriptions."""
        return {i: proc.is_alive() and worker_subscribed(self._settings, i)
                for i, proc in enumerate(self.procs, start=1)}

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        stop_workers(self.procs, timeout)
        if self.procs:
            # multiprocessing's resource tracker (a helper process the workers share) would otherwise
            # exit only after we do: stop and reap it now, so nothing outlives the gateway.
            with contextlib.suppress(Exception):
                resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            for i, proc in enumerate(self.procs):
                if not proc.is_alive() and not self._stop.is_set():
                    log.error("ingest worker %s exited (code %s); starting it again", i + 1, proc.exitcode)
                    self.procs[i] = _spawn(self._settings, i + 1)
                    self.restarts += 1


def stop_workers(procs: list[BaseProcess], timeout: float = 30.0) -> None:
    for proc in procs:
        proc.terminate()  # SIGTERM: the worker drains, acknowledges and disconnects
    for proc in procs:
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send us SIGTERM when the gateway process dies, even by kill -9: a worker must never
    outlive it and go on consuming with nobody supervising it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def _worker_main(settings_data: dict[str, Any], index: int, parent: int) -> None:
    from gateway.service import Gateway

    setup_logging(tag=f"worker-{index} ")
    settings = Settings.model_validate(settings_data)
    # Telemetry can wait a moment; a panic press on the main process's alarm lane cannot.
    os.nice(settings.worker_nice)
    # A plain flag: a handler that set a threading.Event could deadlock on the lock of the very
    # Event.wait() it interrupted (seen: a worker that never stopped).
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stopping.append(signum))
    _die_with_parent(parent)
    gateway = Gateway(worker_settings(settings, index), partition=partition(settings, index))
    gateway.start()
    path = metrics_path(settings, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The main process serves these at /metrics and reads readiness from them: report at once when the
    # subscriptions are granted or lost, and every METRICS_EVERY_S.
    reported: bool | None = None
    last = 0.0
    while not stopping:
        time.sleep(0.1)
        subscribed = gateway.mqtt.subscribed.is_set()
        if subscribed == reported and time.monotonic() - last < METRICS_EVERY_S:
            continue
        reported, last = subscribed, time.monotonic()
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(gateway.metrics.snapshot()))
            tmp.replace(path)
        except OSError:
            log.exception("worker %s: writing metrics failed", index)
    gateway.stop()
