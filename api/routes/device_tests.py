"""Device test press (设备测试): the smallest honest commissioning flow. Asking for a test opens a short
drill window for the device's institution, so the test press is routed to the drill receivers only
(never police or fire). When a person acknowledges that drill incident (ack link or console), the
alerting engine marks the device verified (alerting/commissioning.py). Nothing here marks a device
verified by itself: only the press seen end to end does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from anxin.db import Institution
from api.deps import Actor, System
from api.environment import scoped_device
from api.routes.drill_windows import add_window, drill_receivers
from api.schemas import DrillWindowOut

router = APIRouter(prefix="/api/v1/device-tests", tags=["device tests"])


class DeviceTestIn(BaseModel):
    device_id: str = Field(max_length=200)
    minutes: Annotated[int, Field(ge=5, le=30)] = 10  # short: every alarm of the institution is a drill meanwhile


class DeviceTestOut(BaseModel):
    device_id: str
    window: DrillWindowOut
    drill_receivers: int  # 0: the press cannot reach a drill receiver, so it cannot verify the device


@router.post("", status_code=201)
def start_test(body: DeviceTestIn, request: Request, system: System, user: Actor) -> DeviceTestOut:
    now = datetime.now(UTC)
    with system.sessions.begin() as s:
        device = scoped_device(s, user.scope, body.device_id)
        inst = s.get(Institution, device.institution_id) if device.institution_id else None
        if inst is None:
            raise HTTPException(409, "设备未归属机构 / the device belongs to no institution")
        window = add_window(s, user, request, inst.id, now, now + timedelta(minutes=body.minutes),
                            f"设备测试 device test: {device.id}", resource="device_test")
        return DeviceTestOut(device_id=device.id, window=window, drill_receivers=drill_receivers(s, inst))
