"""InfluxDB sink over the v1 HTTP API (/write line protocol, /query, /ping).

The v1 API is served by InfluxDB 1.x natively, 2.x through DBRP mapping and 3.x as v1 compatibility.
write() returns once the batch is in InfluxDB or safely spooled on disk: a few quick retries, then the
spool. While the spool holds anything, new batches queue behind it so order is kept; a replay thread
sends the spool, oldest first, as soon as /ping answers again. A batch InfluxDB refuses as malformed
(4xx) is not retried forever: it is kept in ``influx-rejected/`` with the error.
"""

from __future__ import annotations

import enum
import gzip
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from anxin.model import Reading
from gateway.sinks.line_protocol import encode
from gateway.sinks.spool import Spool

log = logging.getLogger(__name__)


class _Result(enum.Enum):
    OK = "ok"
    REJECTED = "rejected"  # InfluxDB refused the batch itself
    FAILED = "failed"  # InfluxDB unreachable or overloaded: try again later


class InfluxSink:
    def __init__(
        self,
        url: str,
        database: str,
        *,
        spool_dir: Path,
        username: str | None = None,
        password: str | None = None,
        retention_policy: str | None = None,
        timeout: float = 10.0,
        max_attempts: int = 3,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        gzip_body: bool = True,
        create_database: bool = True,
    ) -> None:
        self.database = database
        self._client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self._params: dict[str, str] = {"db": database, "precision": "ns"}
        if retention_policy:
            self._params["rp"] = retention_policy
        if username:
            self._params["u"] = username
            self._params["p"] = password or ""
        self._max_attempts = max_attempts
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._gzip = gzip_body
        self.spool = Spool(spool_dir / "influx")
        self.rejected_dir = spool_dir / "influx-rejected"
        self._lock = threading.Lock()  # one sender at a time keeps batches in order
        self._need_db = create_database
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.points_written = 0
        self.batches_spooled = 0
        self.batches_replayed = 0
        self.batches_rejected = 0
        self.write_errors = 0
        if self.spool:
            log.warning("InfluxDB spool holds %d batches from before; replaying", self.spool.segments)
        self._thread = threading.Thread(target=self._replay_loop, name="influx-replay", daemon=True)
        self._thread.start()

    @property
    def spool_segments(self) -> int:
        return self.spool.segments

    # -- TelemetrySink -----------------------------------------------------------------------------
    def write(self, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        body = encode(readings)
        with self._lock:
            if not self.spool:
                for attempt in range(self._max_attempts):
                    result = self._send(body)
                    if result is _Result.OK:
                        self.points_written += len(readings)
                        return
                    if result is _Result.REJECTED:
                        return
                    if attempt + 1 < self._max_attempts:
                        time.sleep(min(self._backoff * 2**attempt, self._max_backoff))
            self.spool.append(body)  # raises only if the disk itself fails: the caller keeps the batch
            self.batches_spooled += 1
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)
        self._client.close()

    # -- internals ---------------------------------------------------------------------------------
    def _send(self, body: bytes) -> _Result:
        if self._need_db and not self._create_database():
            return _Result.FAILED
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        content = body
        if self._gzip:
            content = gzip.compress(body, compresslevel=1)  # level 1: most of the gain, little CPU
            headers["Content-Encoding"] = "gzip"
        try:
            resp = self._client.post("/write", params=self._params, content=content, headers=headers)
        except httpx.HTTPError as exc:
            self.write_errors += 1
            log.warning("InfluxDB write failed: %s", exc.__class__.__name__)
            return _Result.FAILED
        if resp.status_code == 204:
            return _Result.OK
        self.write_errors += 1
        if resp.status_code == 404 and "database not found" in resp.text:
            self._need_db = True
            return _Result.FAILED
        if resp.status_code == 429 or resp.status_code >= 500:
            log.warning("InfluxDB busy or failing (%d): %s", resp.status_code, resp.text[:200])
            return _Result.FAILED
        self._reject(body, f"HTTP {resp.status_code}: {resp.text}")
        return _Result.REJECTED

    def _create_database(self) -> bool:
        try:
            resp = self._client.post("/query", params={k: v for k, v in self._params.items() if k in ("u", "p")},
                                     data={"q": f'CREATE DATABASE "{self.database}"'})
        except httpx.HTTPError:
            return False
        if resp.status_code != 200:
            log.error("CREATE DATABASE %s failed (%d): %s", self.database, resp.status_code, resp.text[:200])
            return False
        self._need_db = False
        return True

    def _reject(self, body: bytes, error: str) -> None:
        """InfluxDB refuses the batch itself (a type conflict, a parse error; a partial write stored the
        rest). Keep it with the reason for a person to look at instead of retrying forever."""
        self.batches_rejected += 1
        log.error("InfluxDB rejected a batch: %s", error[:300])
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        stem = self.rejected_dir / f"{time.time_ns()}"
        stem.with_suffix(".lp").write_bytes(body)
        stem.with_suffix(".err").write_text(error, encoding="utf-8")

    def _ping(self) -> bool:
        try:
            return self._client.get("/ping").status_code == 204
        except httpx.HTTPError:
            return False

    def _replay_loop(self) -> None:
        backoff = self._backoff
        while not self._stop.is_set():
            if not self.spool:
                self._wake.wait(1.0)
                self._wake.clear()
                backoff = self._backoff
                continue
            if not self._ping():
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            with self._lock:
                head = self.spool.oldest()
                if head is None:
                    continue
                number, body = head
                result = self._send(body)
                if result is not _Result.FAILED:
                    self.spool.remove(number)
                if result is _Result.OK:
                    self.batches_replayed += 1
                    self.points_written += body.count(b"\n")
                    backoff = self._backoff
            if result is _Result.FAILED:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
