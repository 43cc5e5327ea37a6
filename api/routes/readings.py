"""Readings for charts: one device's metric over the last hours, averaged in buckets, with the limit of
the threshold rule that judges it. Read from the telemetry store the gateway writes (InfluxDB or the
SQLite table), through the same sources the threshold rules use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from alerting.thresholds import series
from anxin.model import METRIC_UNITS
from api.deps import CurrentUser, System
from api.environment import (
    MAX_HOURS,
    bucket_seconds,
    device_kind,
    limit_for,
    scoped_device,
    telemetry,
    thresholds,
)
from api.schemas import PointOut, ReadingsOut

router = APIRouter(prefix="/api/v1/readings", tags=["readings"])


@router.get("")
async def readings(system: System, user: CurrentUser, device: Annotated[str, Query(max_length=200)],
                   metric: Annotated[str, Query(max_length=40)],
                   hours: Annotated[int, Query(ge=1, le=MAX_HOURS)] = 24) -> ReadingsOut:
    """Times are the buckets' starts in UTC; the console shows them in Beijing time."""
    if metric not in METRIC_UNITS:
        raise HTTPException(422, f"未知指标 unknown metric {metric!r}")

    def run() -> ReadingsOut:
        with system.sessions() as s:
            found = scoped_device(s, user.scope, device)
        bucket = bucket_seconds(hours)
        points = series(telemetry(system), found.id, metric, hours * 3600, bucket)
        return ReadingsOut(device_id=found.id, metric=metric, unit=METRIC_UNITS[metric], hours=hours, bucket_s=bucket,
                           limit=limit_for(thresholds(system), metric, device_kind(system, found.profile), found),
                           points=[PointOut(at=datetime.fromtimestamp(t, UTC), value=round(v, 4)) for t, v in points])

    return await run_in_threadpool(run)
