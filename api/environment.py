"""The read side of an institution's rooms for the console: which devices it has (scoped), what they
measure now and over time, and the limits the threshold rules judge them by (the rules file is the one
source of the numbers: alerting/default_thresholds.yaml or ANXIN_THRESHOLDS)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import HTTPException
from sqlalchemy.orm import Session

from alerting.thresholds import (
    InfluxWindowSource,
    SqliteWindowSource,
    ThresholdConfig,
    load_thresholds,
    window_source,
)
from anxin.db import Device
from api.deps import Runtime
from api.schemas import LimitOut
from api.scope import Scope

# What a room's environment is judged by, in the order the page shows it (battery etc. are device health).
ENV_METRICS = ("co2", "hcho", "pm25", "temperature", "humidity")
MAX_HOURS = 24 * 7


@lru_cache(maxsize=4)
def _thresholds(path: Path, mtime_ns: int) -> ThresholdConfig:
    return load_thresholds(path)


def thresholds(system: Runtime) -> ThresholdConfig:
    """The rules the gateway evaluates (read again when the file changes)."""
    path = system.settings.thresholds
    return _thresholds(path, path.stat().st_mtime_ns)


_sources: dict[tuple[object, ...], InfluxWindowSource | SqliteWindowSource] = {}


def telemetry(system: Runtime) -> InfluxWindowSource | SqliteWindowSource:
    """The telemetry store the gateway writes, one client per configuration (its connections are reused)."""
    st = system.settings
    key = (st.telemetry_sink, st.sqlite_telemetry_path, st.influx_url, st.influx_database, st.influx_username,
           st.influx_password)
    if key not in _sources:
        _sources[key] = window_source(st)
    return _sources[key]


def device_kind(system: Runtime, profile: str | None) -> str | None:
    found = system.profiles.by_name.get(profile or "")
    return found.spec.kind if found else None


def limit_for(config: ThresholdConfig, metric: str, kind: str | None, device: Device) -> LimitOut | None:
    """The limit of the first rule judging ``metric`` on this device, with its overrides applied."""
    for rule in config.rules_for(metric, kind):
        above, clear_below = config.limits(rule, device.institution_id or "", device.room, device.id)
        return LimitOut(rule=rule.name, above=above, clear_below=clear_below, statistic=rule.statistic,
                        window_s=rule.window_s)
    return None


def scoped_device(s: Session, scope: Scope, device_id: str) -> Device:
    """The device if it exists and its institution lies in the scope; 404 otherwise (the same answer)."""
    device = s.get(Device, device_id)
    if device is None or not scope.allows(device.institution_id):
        raise HTTPException(404, "没有该设备 / no such device")  # the id is not echoed: same answer for all
    return device


def bucket_seconds(hours: int) -> int:
    """About 288 points whatever the range (24 h: 5 min; 7 d: 35 min), whole minutes."""
    return max(60, -(-hours * 3600 // 288 // 60) * 60)
