"""Batches readings for the telemetry sink; acknowledges each message once its batch is durable.

A full buffer blocks the caller (the MQTT network thread), which pushes back to the broker instead of
growing memory or dropping readings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from anxin.metrics import Metrics
from anxin.model import Reading
from gateway.sinks import TelemetrySink

log = logging.getLogger(__name__)


class TelemetryBatcher:
    def __init__(
        self,
        sink: TelemetrySink,
        metrics: Metrics,
        *,
        batch_size: int = 5000,
        flush_interval_s: float = 0.5,
        max_pending: int | None = None,
    ) -> None:
        self._sink = sink
        self._metrics = metrics
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._max_pending = max_pending or batch_size * 4
        self._readings: list[Reading] = []
        self._acks: list[Callable[[], None]] = []
        self._cond = threading.Condition()
        self._in_flight = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="telemetry-flush", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, readings: Sequence[Reading], ack: Callable[[], None] | None) -> None:
        with self._cond:
            while len(self._readings) >= self._max_pending and not self._stopping:
                self._cond.wait(0.5)
            self._readings.extend(readings)
            if ack is not None:
                self._acks.append(ack)
            if len(self._readings) >= self._batch_size:
                self._cond.notify_all()

    def pending(self) -> int:
        return len(self._readings) + (1 if self._in_flight else 0)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything added so far is durable."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            return self._cond.wait_for(lambda: not self._readings and not self._acks and not self._in_flight,
                                       max(0.0, deadline - time.monotonic()))

    def stop(self, timeout: float = 30.0) -> None:
        if not self._thread.is_alive():
            return
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self._interval
                while len(self._readings) < self._batch_size and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stopping and not self._readings and not self._acks:
                    return
                readings, self._readings = self._readings, []
                acks, self._acks = self._acks, []
                self._in_flight = bool(readings or acks)
                self._cond.notify_all()  # wake writers blocked on a full buffer
            if readings or acks:
                self._write(readings)
                for ack in acks:
                    try:
                        ack()
                    except Exception:
                        log.exception("ack failed")
                with self._cond:
                    self._in_flight = False
                    self._cond.notify_all()

    def _write(self, readings: list[Reading]) -> None:
        if not readings:
            return
        backoff = 0.1
        while True:
            try:
                self._sink.write(readings)
                self._metrics.inc("anxin_readings_total", len(readings))
                return
            except Exception:
                # The sink could not even spool (disk full?): hold the batch, its messages stay unacked.
                self._metrics.inc("anxin_telemetry_write_failures_total")
                log.exception("telemetry sink failed; retrying in %.1fs", backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
