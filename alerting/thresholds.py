"""Rules on readings: thresholds (CO2 for 10 min, formaldehyde 1 h mean, fridge above 8 °C for 15 min)
and silence (a device that stopped reporting is offline).

Evaluated periodically from the time-series store, not from the message stream: with several ingest
workers a device's readings are spread over processes, and the standards' averaging windows are what
the store answers directly. A breach becomes an ``env.*`` event through the event store, like a device
alarm, so incidents, routing and escalation treat it the same way.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from anxin.model import METRIC_UNITS, Event, EventState, EventType

if TYPE_CHECKING:
    from anxin.config import Settings

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = Path(__file__).resolve().parent / "default_thresholds.yaml"
Statistic = Literal["min", "max", "mean"]
_SQL_STAT = {"min": "min", "max": "max", "mean": "avg"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Strict):
    name: str
    metric: str
    statistic: Statistic
    window_s: int = Field(gt=0)
    above: float
    clear_below: float
    event: EventType
    kinds: list[str] = Field(default_factory=list)  # device kinds (profile kind); empty: all

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if self.metric not in METRIC_UNITS:
            raise ValueError(f"rule {self.name}: unknown metric {self.metric!r}")
        if self.clear_below > self.above:
            raise ValueError(f"rule {self.name}: clear_below must not exceed above (hysteresis)")
        if not self.event.value.startswith("env."):
            raise ValueError(f"rule {self.name}: event must be an env.* type")
        return self


class Override(_Strict):
    """New limits for one rule in one institution, narrowed to a room or a single device if given
    (the most specific override wins: device, then room, then the whole institution)."""

    rule: str
    institution: str
    room: str | None = None
    device: str | None = None
    above: float
    clear_below: float

    @model_validator(mode="after")
    def _check(self) -> Override:
        if self.clear_below > self.above:
            raise ValueError(f"override of {self.rule}: clear_below must not exceed above (hysteresis)")
        return self


class ThresholdConfig(_Strict):
    rules: list[Rule]
    overrides: list[Override] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_rules(self) -> ThresholdConfig:
        names = {r.name for r in self.rules}
        for o in self.overrides:
            if o.rule not in names:
                raise ValueError(f"override names unknown rule {o.rule!r}")
        return self

    def limits(self, rule: Rule, institution: str, room: str, device: str) -> tuple[float, float]:
        """(above, clear_below) for one device: the most specific override (device, then room, then the
        whole institution), else the rule's own. The evaluator and the console both ask here."""
        for want in ((institution, None, device), (institution, room or None, None), (institution, None, None)):
            for o in self.overrides:
                if o.rule == rule.name and (o.institution, o.room, o.device) == want:
                    return o.above, o.clear_below
        return rule.above, rule.clear_below

    def rules_for(self, metric: str, kind: str | None) -> list[Rule]:
        """The rules that judge ``metric`` of a device of ``kind``."""
        return [r for r in self.rules if r.metric == metric and (not r.kinds or kind in r.kinds)]


def load_thresholds(path: Path = DEFAULT_THRESHOLDS) -> ThresholdConfig:
    return ThresholdConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


class WindowSource(Protocol):
    def stat(self, metric: str, statistic: Statistic, window_s: int) -> dict[str, tuple[float, int]]:
        """device id -> (statistic over the last window_s seconds, number of readings)."""


class InfluxWindowSource:
    def __init__(self, url: str, database: str, username: str | None = None, password: str | None = None) -> None:
        self._client = httpx.Client(base_url=url.rstrip("/"), timeout=10.0)
        self._params = {"db": database, **({"u": username, "p": password or ""} if username else {})}

    def stat(self, metric: str, statistic: Statistic, window_s: int) -> dict[str, tuple[float, int]]:
        q = (f'SELECT {statistic}("value"), count("value") FROM "{metric}" '
             f"WHERE time > now() - {int(window_s)}s GROUP BY \"device_id\"")
        resp = self._client.post("/query", params=self._params, data={"q": q})
        resp.raise_for_status()
        out: dict[str, tuple[float, int]] = {}
        for series in resp.json()["results"][0].get("series", []):
            _, value, count = series["values"][0]
            if value is not None:
                out[series["tags"]["device_id"]] = (float(value), int(count))
        return out


class SqliteWindowSource:
    """The embedded telemetry table (gateway/sinks/sqlite_sink.py)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def stat(self, metric: str, statistic: Statistic, window_s: int) -> dict[str, tuple[float, int]]:
        since = int((datetime.now(UTC).timestamp() - window_s) * 1e9)
        with sqlite3.connect(self._path) as conn:
            rows = conn.execute(f"SELECT device_id, {_SQL_STAT[statistic]}(value), count(*) FROM readings "
                                "WHERE metric = ? AND ts_ns > ? GROUP BY device_id", (metric, since)).fetchall()
        return {d: (float(v), int(n)) for d, v, n in rows if v is not None}


DeviceInfo = Callable[[str], tuple[str | None, str | None, str]]  # device id -> (institution, kind, room)
Emit = Callable[[Sequence[Event]], None]


class ThresholdEvaluator:
    def __init__(self, config: ThresholdConfig, source: WindowSource, device_info: DeviceInfo, emit: Emit,
                 interval_s: float = 30.0, min_readings: int = 2, offline: OfflineDetector | None = None,
                 leader: Leader | None = None) -> None:
        self.offline = offline
        self._leader = leader
        self._leading = False
        self._config = config
        self._source = source
        self._device_info = device_info
        self._emit = emit
        self._interval = interval_s
        self._min_readings = min_readings
        self._active: set[tuple[str, str]] = set()  # (rule, device) currently breaching
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="thresholds", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._lead():
                    continue
                self.evaluate()
                if self.offline is not None:
                    self.offline.evaluate()
            except httpx.TransportError as exc:  # the store is down: say so in one line, try next round
                log.warning("threshold and offline rules not evaluated: telemetry store unreachable (%s)", exc)
            except Exception:
                log.exception("threshold evaluation failed")

    def _lead(self) -> bool:
        """With several instances only the lease holder evaluates, so a breach is one event, not one per
        instance. Taking the lead over, it first learns from the database what is active now."""
        if self._leader is None:
            return True
        leading = self._leader.hold()
        if leading and not self._leading:
            active, offline = self._leader.active_states()
            self._active = {(rule, device) for rule, device in active}
            if self.offline is not None:
                self.offline.prime(offline)
            log.info("threshold and offline rules: this instance evaluates them now")
        self._leading = leading
        return leading

    def evaluate(self) -> list[Event]:
        now = datetime.now(UTC)
        events: list[Event] = []
        for rule in self._config.rules:
            for device, (value, count) in self._source.stat(rule.metric, rule.statistic, rule.window_s).items():
                institution, kind, room = self._device_info(device)
                if rule.kinds and kind not in rule.kinds:
                    continue
                above, clear_below = self._config.limits(rule, institution or "", room, device)
                key = (rule.name, device)
                detail = {"rule": rule.name, "metric": rule.metric, "statistic": rule.statistic,
                          "window_s": rule.window_s, "value": round(value, 4), "limit": above, "readings": count}
                if key not in self._active and value > above and count >= self._min_readings:
                    self._active.add(key)
                    events.append(Event(device, rule.event, EventState.ACTIVE, now, institution, detail))
                elif key in self._active and value < clear_below:
                    self._active.discard(key)
                    events.append(Event(device, rule.event, EventState.CLEAR, now, institution, detail))
        if events:
            self._emit(events)
        return events


class Leader(Protocol):
    def hold(self) -> bool:
        """Take or renew the rules' lease; True while this instance holds it."""

    def active_states(self) -> tuple[set[tuple[str, str]], set[str]]:
        """What the database says is active: (rule, device) breaches and offline devices."""


class LastSeenSource(Protocol):
    def last_seen(self, lookback_s: int) -> dict[str, float]:
        """device id -> epoch seconds of its newest reading within the lookback."""


def window_source(settings: Settings) -> InfluxWindowSource | SqliteWindowSource:
    """The telemetry store the settings name (the gateway writes its readings there)."""
    if settings.telemetry_sink == "sqlite":
        return SqliteWindowSource(settings.sqlite_telemetry_path)
    return InfluxWindowSource(settings.influx_url, settings.influx_database, settings.influx_username,
                              settings.influx_password)


def influx_last_seen(source: InfluxWindowSource, lookback_s: int) -> dict[str, float]:
    q = f'SELECT last("value") FROM /.*/ WHERE time > now() - {int(lookback_s)}s GROUP BY "device_id"'
    resp = source._client.post("/query", params={**source._params, "epoch": "s"}, data={"q": q})
    resp.raise_for_status()
    out: dict[str, float] = {}
    for series in resp.json()["results"][0].get("series", []):
        device = series["tags"]["device_id"]
        out[device] = max(out.get(device, 0.0), float(series["values"][0][0]))
    return out


def sqlite_last_seen(source: SqliteWindowSource, lookback_s: int) -> dict[str, float]:
    since = int((datetime.now(UTC).timestamp() - lookback_s) * 1e9)
    with sqlite3.connect(source._path) as conn:
        # An implausible value still shows the device is reporting (as InfluxDB's /.*/ includes it).
        rows = conn.execute("SELECT device_id, max(ts_ns) FROM (SELECT device_id, ts_ns FROM readings UNION ALL "
                            "SELECT device_id, ts_ns FROM implausible_readings) WHERE ts_ns > ? GROUP BY device_id",
                            (since,)).fetchall()
    return {d: ts / 1e9 for d, ts in rows}


def series(source: InfluxWindowSource | SqliteWindowSource, device_id: str, metric: str, since_s: int,
           bucket_s: int) -> list[tuple[float, float]]:
    """One device's ``metric`` over the last ``since_s`` seconds as (epoch seconds of the bucket's start,
    mean in the bucket), oldest first: what the console's charts draw."""
    if isinstance(source, SqliteWindowSource):
        if not source._path.exists():
            return []
        since = int((datetime.now(UTC).timestamp() - since_s) * 1e9)
        bucket = int(bucket_s * 1e9)
        with sqlite3.connect(source._path) as conn:
            rows = conn.execute("SELECT (ts_ns / ?) * ?, avg(value) FROM readings WHERE device_id = ? AND metric = ? "
                                "AND ts_ns > ? GROUP BY 1 ORDER BY 1", (bucket, bucket, device_id, metric, since)
                                ).fetchall()
        return [(ts / 1e9, float(v)) for ts, v in rows if v is not None]
    q = (f'SELECT mean("value") FROM "{_influx_name(metric)}" WHERE "device_id" = \'{_influx_str(device_id)}\' '
         f"AND time > now() - {int(since_s)}s GROUP BY time({int(bucket_s)}s) fill(none)")
    resp = source._client.post("/query", params={**source._params, "epoch": "s"}, data={"q": q})
    resp.raise_for_status()
    out: list[tuple[float, float]] = []
    for found in resp.json()["results"][0].get("series", []):
        out.extend((float(t), float(v)) for t, v in found["values"] if v is not None)
    return sorted(out)


def latest_values(source: InfluxWindowSource | SqliteWindowSource, devices: Sequence[str],
                  lookback_s: int) -> dict[tuple[str, str], tuple[float, float]]:
    """(device, metric) -> (epoch seconds, value) of the newest reading of each of ``devices``. Index
    lookups per device, so the cost does not grow with the store."""
    wanted = sorted(set(devices))
    if not wanted:
        return {}
    out: dict[tuple[str, str], tuple[float, float]] = {}
    if isinstance(source, SqliteWindowSource):
        if not source._path.exists():
            return {}
        since = int((datetime.now(UTC).timestamp() - lookback_s) * 1e9)
        with sqlite3.connect(source._path) as conn:
            for device in wanted:
                for metric in METRIC_UNITS:  # one seek each on (device_id, metric, ts_ns)
                    row = conn.execute("SELECT ts_ns, value FROM readings WHERE device_id = ? AND metric = ? AND "
                                       "ts_ns > ? ORDER BY ts_ns DESC LIMIT 1", (device, metric, since)).fetchone()
                    if row is not None:
                        out[(device, metric)] = (row[0] / 1e9, float(row[1]))
        return out
    which = " OR ".join(f'"device_id" = \'{_influx_str(d)}\'' for d in wanted)
    q = f'SELECT last("value") FROM /.*/ WHERE ({which}) AND time > now() - {int(lookback_s)}s GROUP BY "device_id"'
    resp = source._client.post("/query", params={**source._params, "epoch": "s"}, data={"q": q})
    resp.raise_for_status()
    for found in resp.json()["results"][0].get("series", []):
        if found["name"] in METRIC_UNITS:  # not the ``implausible`` measurement
            t, v = found["values"][0]
            out[(found["tags"]["device_id"], found["name"])] = (float(t), float(v))
    return out


def _influx_name(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def _influx_str(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


class OfflineDetector:
    """A registered device whose profile names a heartbeat interval is offline when nothing arrived for
    ``factor`` intervals; it is back online with its next reading. (Devices that say so themselves —
    LWT, zigbee2mqtt availability — raise device.offline through their profiles at once.)"""

    def __init__(self, last_seen: Callable[[int], dict[str, float]], devices: Callable[[], dict[str, tuple[
            str | None, int]]], emit: Emit, *, factor: float = 2.5, started_at: float | None = None) -> None:
        self._last_seen = last_seen
        self._devices = devices  # device id -> (institution, heartbeat interval s)
        self._emit = emit
        self._factor = factor
        self._started = started_at if started_at is not None else datetime.now(UTC).timestamp()
        self._offline: dict[str, float] = {}  # device -> since when (epoch s) it counts as offline

    def prime(self, offline: set[str]) -> None:
        """Devices the database says are offline (by this rule, or by their own LWT / availability): they
        are back only with a reading that arrives from now on, never because the gateway just started."""
        now = datetime.now(UTC).timestamp()
        self._offline = dict.fromkeys(offline, now)

    def evaluate(self) -> list[Event]:
        devices = self._devices()
        if not devices:
            return []
        now = datetime.now(UTC)
        lookback = int(max(interval for _, interval in devices.values()) * self._factor * 2)
        seen = self._last_seen(lookback)
        events: list[Event] = []
        for device, (institution, interval) in devices.items():
            limit = interval * self._factor
            # a device never heard of counts from the gateway's start, not from 1970
            reading = seen.get(device)
            last = reading if reading is not None else self._started
            silent = now.timestamp() - last
            if device not in self._offline and silent > limit:
                self._offline[device] = now.timestamp()
                events.append(Event(device, EventType.OFFLINE, EventState.ACTIVE, now, institution,
                                    {"rule": "heartbeat", "silent_s": round(silent), "limit_s": limit}))
            elif device in self._offline and reading is not None and reading > self._offline[device]:
                del self._offline[device]
                events.append(Event(device, EventType.OFFLINE, EventState.CLEAR, now, institution,
                                    {"rule": "heartbeat", "silent_s": round(silent)}))
        if events:
            self._emit(events)
        return events
