"""Device health page (设备状态, h-board): the devices of the user's institutions with their problems,
filtered by institution and problem (a plain GET form: the page works without scripts)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from anxin.db import Institution
from api.console.render import page
from api.deps import CurrentUser, System
from api.routes.device_health import DeviceProblem, health_rows
from api.schemas import DeviceHealthOut

router = APIRouter(include_in_schema=False)

PROBLEM_TEXTS: dict[str, tuple[str, str]] = {
    DeviceProblem.OFFLINE: ("离线", "offline"),
    DeviceProblem.BATTERY_LOW: ("低电量", "low battery"),
    DeviceProblem.TAMPER: ("防拆报警", "tamper"),
    DeviceProblem.SILENT: ("长时间未上报", "not heard from"),
    DeviceProblem.UNVERIFIED: ("未验收", "unverified"),
}


@router.get("/console/devices", response_class=HTMLResponse)
async def show(request: Request, user: CurrentUser, system: System,
               institution: Annotated[str | None, Query(max_length=64)] = None,
               problem: Annotated[str | None, Query(max_length=20)] = None) -> HTMLResponse:
    chosen = DeviceProblem(problem) if problem in set(DeviceProblem) else None
    inst = institution or None

    def load() -> tuple[list[tuple[str, str]], list[DeviceHealthOut], Counter[str]]:
        with system.sessions() as s:
            institutions = [(r.id, r.name) for r in s.execute(
                select(Institution.id, Institution.name).where(user.scope.where(Institution.id))
                .order_by(Institution.id))]
        rows = health_rows(system, user.scope, inst)
        counts = Counter(p for r in rows for p in r.problems)
        if chosen is not None:
            rows = [r for r in rows if chosen.value in r.problems]
        return institutions, rows, counts

    institutions, rows, counts = await run_in_threadpool(load)
    return page(request, "devices.html", user, institutions=institutions, rows=rows, counts=counts,
                problems=PROBLEM_TEXTS, chosen=chosen.value if chosen else "", chosen_institution=inst or "")
