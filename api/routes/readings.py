"""Readings for charts: one device's metrics over the last hours, averaged in buckets, each with the
limit of the threshold rule that judges it. Read from the telemetry store the gateway writes (InfluxDB
or the SQLite table), through the same sources the threshold rules use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from alerting.thresholds import latest_values, series
from anxin.model import METRIC_UNITS
from api.deps import CurrentUser, System
from api.editing import DevicePath
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


@router.get("/{device_id}")
async def readings(system: System, user: CurrentUser, device_id: DevicePath,
                   metric: Annotated[str | None, Query(max_length=40, description="one metric; all if absent")] = None,
                   hours: Annotated[int, Query(ge=1, le=MAX_HOURS)] = 24) -> list[ReadingsOut]:
    """The device's series (one per metric it reported in the range, or just ``metric``). Times are the
    buckets' starts in UTC; the console shows them in Beijing time."""

    def run() -> list[ReadingsOut]:
        with system.sessions() as s:
            device = scoped_device(s, user.scope, device_id)  # 404 outside the scope, before anything else
        if metric is not None and metric not in METRIC_UNITS:
            raise HTTPException(422, f"未知指标 unknown metric {metric!r}")
        source = telemetry(system)
        metrics = [metric] if metric is not None else sorted(
            m for _, m in latest_values(source, [device.id], hours * 3600))
        bucket = bucket_seconds(hours)
        config, kind = thresholds(system), device_kind(system, device.profile)
        return [ReadingsOut(device_id=device.id, metric=m, unit=METRIC_UNITS[m], hours=hours, bucket_s=bucket,
                            limit=limit_for(config, m, kind, device),
                            points=[PointOut(at=datetime.fromtimestamp(t, UTC), value=round(v, 4))
                                    for t, v in series(source, device.id, m, hours * 3600, bucket)])
                for m in metrics]

    return await run_in_threadpool(run)
