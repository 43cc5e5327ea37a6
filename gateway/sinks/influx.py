"""InfluxDB sink over the v1 HTTP API (/write line protocol, /query, /ping).

The v1 API is served by InfluxDB 1.x natively (and by 2.x/3.x through their v1 compatibility endpoints).

write() returns once the batch is in InfluxDB or safely spooled on disk: a few quick attempts with
exponential backoff on connection errors, timeouts, 5xx and 429, then the spool. While the spool holds
anything, new batches queue behind it, so InfluxDB receives batches in the order they were written. A
replay thread (started here, stopped by close()) waits until /ping answers, then sends the spool oldest
first. A batch InfluxDB refuses as bad (4xx other than 429 and the "not the batch's fault" ones below)
is not retried forever: it is logged and kept with the error in ``<spool>/rejected/`` for a person.

Re-sending a batch is harmless: a point is identified by measurement, tag set and timestamp, and
writing it again overwrites it with the same value. That makes "timeout, then retry" and "crash after
sending, before removing the segment" safe.
"""

from __future__ import annotations

import enum
import gzip as gzip_module
import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from anxin.model import Reading
from gateway.sinks.line_protocol import encode
from gateway.sinks.spool import Spool, write_atomic

log = logging.getLogger(__name__)

_DROPPED = re.compile(rb"dropped=(\d+)")


class _Result(enum.Enum):
    OK = "ok"
    REJECTED = "rejected"  # InfluxDB refused the batch itself (all or part of it): set aside, never retried
    FAILED = "failed"  # unreachable, overloaded, misconfigured: try again later


class InfluxSink:
    """TelemetrySink for InfluxDB. Thread-safe: write() from any thread while the replay thread runs."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        retention_policy: str | None = None,
        spool_dir: Path | str,
        timeout: float = 10.0,
        max_attempts: int = 3,
        gzip: bool = True,
        create_database: bool = True,
        backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
    ) -> None:
        self.database = database
        auth = httpx.BasicAuth(username, password or "") if username else None  # not u/p in URLs: no leaks in logs
        # connect fails fast when the host is gone; reads may take a while when InfluxDB is busy compacting
        self._client = httpx.Client(base_url=url.rstrip("/"), timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
                                    auth=auth)
        self._params: dict[str, str] = {"db": database, "precision": "ns"}
        if retention_policy:
            self._params["rp"] = retention_policy
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._gzip = gzip
        self.spool = Spool(Path(spool_dir) / "influx")
        self.rejected_dir = self.spool.directory / "rejected"
        self._create_database = create_database
        self._need_db = create_database
        # _write_lock: one writer at a time decides "send now or spool". _send_lock: one HTTP sender at a
        # time (live write or replay), so batches reach InfluxDB in order. Appending to the spool needs
        # only the first, so write() never waits behind a slow replay request.
        self._write_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        self._rejected_seq = 0
        # counters for the metrics endpoint (each written under one lock, read without)
        self.points_written = 0
        self.batches_spooled = 0
        self.batches_replayed = 0
        self.batches_rejected = 0
        self.write_errors = 0
        if self.spool:
            log.warning("InfluxDB spool holds %d batches (%d bytes) from before; replaying them first",
                        self.spool.segments, self.spool.size_bytes)
        self._thread = threading.Thread(target=self._replay_loop, name="influx-replay", daemon=True)
        self._thread.start()

    @property
    def spool_segments(self) -> int:
        return self.spool.segments

    @property
    def spool_bytes(self) -> int:
        return self.spool.size_bytes

    # -- TelemetrySink -----------------------------------------------------------------------------
    def write(self, readings: Sequence[Reading]) -> None:
        if self._closed:
            raise RuntimeError("InfluxSink is closed")
        body = encode(readings)
        if not body:
            return
        with self._write_lock:
            # Behind a non-empty spool (InfluxDB was down, or replay is catching up) a batch just queues:
            # that keeps the order, and never waits for the replay thread's network round trips.
            if not self.spool and self._send_with_retries(body):
                return
            self.spool.append(body)  # raises only if the disk fails: the caller keeps the batch
            self.batches_spooled += 1
        self._wake.set()

    def _send_with_retries(self, body: bytes) -> bool:
        """A few quick attempts; False if InfluxDB is unavailable and the batch must be spooled."""
        with self._send_lock:
            for attempt in range(self._max_attempts):
                if attempt:
                    time.sleep(min(self._backoff * 2 ** (attempt - 1), self._max_backoff))
                if self._send(body) is not _Result.FAILED:
                    return True
        log.warning("InfluxDB unavailable after %d attempts: spooling to %s", self._max_attempts,
                    self.spool.directory)
        return False

    def close(self) -> None:
        """Stop the replay thread and the HTTP client; a non-empty spool stays on disk for next time."""
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join((self._client.timeout.read or 10.0) + 5.0)
        with self._send_lock:
            self._client.close()
        if self.spool:
            log.warning("InfluxSink closed with %d batches still spooled in %s", self.spool.segments,
                        self.spool.directory)

    # -- sending -----------------------------------------------------------------------------------
    def _send(self, body: bytes) -> _Result:
        """One attempt at /write. Caller holds self._send_lock."""
        if self._need_db and not self._ensure_database():
            return _Result.FAILED
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        content = body
        if self._gzip:
            content = gzip_module.compress(body, compresslevel=1)  # level 1: most of the gain for little CPU
            headers["Content-Encoding"] = "gzip"
        try:
            resp = self._client.post("/write", params=self._params, content=content, headers=headers)
        except httpx.TransportError as exc:  # refused, reset, timed out: InfluxDB may or may not have it
            self.write_errors += 1
            log.debug("InfluxDB write failed: %r", exc)
            return _Result.FAILED
        status = resp.status_code
        if status == 204:
            self.points_written += body.count(b"\n")
            return _Result.OK
        self.write_errors += 1
        error = resp.text[:2000]
        if status == 404 and "database not found" in error:
            log.error("InfluxDB database %r does not exist%s", self.database,
                      "; creating it" if self._create_database else " (create_database is off)")
            self._need_db = self._create_database
            return _Result.FAILED
        if status in (401, 403):  # credentials, not the batch: keep it and retry
            log.error("InfluxDB refused the credentials (%d): %s", status, error[:300])
            return _Result.FAILED
        if status == 429 or status >= 500:  # overloaded, or e.g. "retention policy not found" (500)
            log.warning("InfluxDB busy or failing (%d): %s", status, error[:300])
            return _Result.FAILED
        # 400 and other 4xx: the batch itself is bad. "partial write" means the good points are stored;
        # the whole batch is kept either way (re-sending the good ones later is harmless).
        if status == 400 and "partial write" in error:
            lines = body.count(b"\n")
            dropped = max(sum(int(m) for m in _DROPPED.findall(resp.content)), error.count("unable to parse"))
            self.points_written += max(0, lines - dropped)
        self._reject(body, f"HTTP {status}: {error}")
        return _Result.REJECTED

    def _ensure_database(self) -> bool:
        """CREATE DATABASE (idempotent in InfluxDB). Caller holds self._send_lock."""
        name = self.database.replace("\\", "\\\\").replace('"', '\\"')
        try:
            resp = self._client.post("/query", data={"q": f'CREATE DATABASE "{name}"'})
        except httpx.TransportError:
            return False
        self._need_db = False
        if resp.status_code != 200 or '"error"' in resp.text:
            # e.g. a user without admin rights: the database may well exist, so go on and write; if it
            # does not, /write answers "database not found" and this is tried again (with backoff).
            log.error("CREATE DATABASE %r failed (%d): %s", self.database, resp.status_code, resp.text[:300])
        else:
            log.info("InfluxDB database %r ready", self.database)
        return True

    def _reject(self, body: bytes, error: str) -> None:
        """Set a batch InfluxDB refused aside, with the reason, instead of retrying it forever."""
        self.batches_rejected += 1
        self._rejected_seq += 1
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{time.time_ns()}-{self._rejected_seq:06d}"
        write_atomic(self.rejected_dir / f"{stem}.err", error.encode())
        write_atomic(self.rejected_dir / f"{stem}.lp", body)
        log.error("InfluxDB rejected a batch of %d points, kept in %s/%s.lp: %s", body.count(b"\n"),
                  self.rejected_dir, stem, error[:300])

    def _ping(self) -> bool:
        try:
            return self._client.get("/ping", timeout=min(self._client.timeout.read or 5.0, 5.0)).status_code == 204
        except httpx.TransportError:
            return False

    # -- replay ------------------------------------------------------------------------------------
    def _replay_loop(self) -> None:
        backoff = self._backoff
        reachable = False  # /ping is asked only after a failure, not before every segment
        replayed_run = 0
        while not self._stop.is_set():
            try:
                if self._need_db:  # at start (InfluxDB may be down then) and after "database not found"
                    with self._send_lock:
                        ok = not self._need_db or self._ensure_database()
                    if not ok:
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self._max_backoff)
                        continue
                if not self.spool:
                    if replayed_run:
                        log.info("InfluxDB spool drained: %d batches replayed", replayed_run)
                        replayed_run = 0
                    backoff = self._backoff
                    reachable = False  # whatever refills the spool was a failed write: ping first
                    self._wake.wait(1.0)
                    self._wake.clear()
                    continue
                if not reachable and not self._ping():
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                result = self._replay_oldest()
            except Exception:  # e.g. the disk failing under rejected/: keep the thread alive, try again later
                log.exception("InfluxDB spool replay failed")
                result = _Result.FAILED
            reachable = result is not _Result.FAILED
            if reachable:
                backoff = self._backoff
                replayed_run += result is _Result.OK
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    def _replay_oldest(self) -> _Result:
        with self._send_lock:
            if self._stop.is_set():
                return _Result.FAILED
            head = self.spool.oldest()
            if head is None:
                return _Result.OK
            number, body = head
            result = self._send(body)
            if result is not _Result.FAILED:
                self.spool.remove(number)
            if result is _Result.OK:
                self.batches_replayed += 1
            return result
