"""Devices: the registry of what may send (external id, institution, profile, room). Everyone reads the
devices of their scope; administrators register, change and remove them. A change reaches ingest at
once (the registry snapshot is refreshed), and a new institution or profile makes the device
unverified again (alerting/commissioning.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerting import commissioning
from anxin.db import Device, Institution
from api import audit
from api.deps import Admin, CurrentUser, Runtime, SessionDep, System
from api.editing import (
    DeviceIdField,
    DevicePath,
    Ident,
    IdFilter,
    Text,
    apply_changes,
    conflict,
    not_found,
    unprocessable,
)
from api.models import AuditAction
from api.schemas import DeviceOut
from api.scope import Scope

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: DeviceIdField
    institution_id: Ident
    profile: Ident
    name: Text = ""
    room: Text = ""


class DevicePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    institution_id: Ident | None = None
    profile: Ident | None = None
    name: Text | None = None
    room: Text | None = None


def device_rows(s: Session, scope: Scope, *, institution: str | None = None, device_id: str | None = None,
                limit: int | None = None, offset: int = 0) -> list[DeviceOut]:
    q = (select(Device, Institution.name).outerjoin(Institution, Institution.id == Device.institution_id)
         .where(scope.where(Device.institution_id)).order_by(Device.institution_id, Device.room, Device.id)
         .offset(offset))
    if institution is not None:
        q = q.where(Device.institution_id == institution)
    if device_id is not None:
        q = q.where(Device.id == device_id)
    if limit is not None:
        q = q.limit(limit)
    return [DeviceOut(id=d.id, institution_id=d.institution_id, institution=name or "", profile=d.profile or "",
                      name=d.name, room=d.room, verification=d.verification, verified_at=d.verified_at,
                      verified_by=d.verified_by, created_at=d.created_at) for d, name in s.execute(q)]


def scoped_device(s: Session, scope: Scope, device_id: str) -> DeviceOut:
    rows = device_rows(s, scope, device_id=device_id)
    if not rows:
        not_found("设备", "device", device_id)
    return rows[0]


def _check(s: Session, system: Runtime, institution_id: str | None, profile: str | None) -> None:
    if institution_id is not None and s.get(Institution, institution_id) is None:
        unprocessable(f"没有机构 / no institution {institution_id!r}")
    if profile is not None and profile not in system.profiles.by_name:
        unprocessable(f"没有设备配置 {profile!r}（anxin profiles 列出全部）/ unknown profile {profile!r} "
                      "(anxin profiles lists them)")


@router.get("")
def list_devices(s: SessionDep, user: CurrentUser, institution: IdFilter = None,
                 limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
                 offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> list[DeviceOut]:
    """The devices in the caller's scope, by institution and room."""
    return device_rows(s, user.scope, institution=institution, limit=limit, offset=offset)


@router.get("/{device_id:path}")
def get_device(device_id: DevicePath, s: SessionDep, user: CurrentUser) -> DeviceOut:
    return scoped_device(s, user.scope, device_id)


@router.post("", status_code=201)
def create_device(body: DeviceIn, request: Request, system: System, user: Admin) -> DeviceOut:
    with system.sessions.begin() as s:
        if s.get(Device, body.id) is not None:
            conflict(f"设备已登记 / device {body.id!r} is registered already")
        _check(s, system, body.institution_id, body.profile)
        s.add(Device(**body.model_dump()))
        audit.record(s, user, request, AuditAction.CREATE, "device", body.id, body.name or body.id,
                     **body.model_dump())
        s.flush()
        out = scoped_device(s, user.scope, body.id)
    system.registry.refresh()  # ingest knows the device from the next message on
    return out


@router.patch("/{device_id:path}")
def update_device(device_id: DevicePath, body: DevicePatch, request: Request, system: System,
                  user: Admin) -> DeviceOut:
    with system.sessions.begin() as s:
        device = s.get(Device, device_id)
        if device is None:
            not_found("设备", "device", device_id)
        given = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
        _check(s, system, given.get("institution_id"), given.get("profile"))
        before = Device(profile=device.profile, institution_id=device.institution_id)
        changes = apply_changes(device, given)
        commissioning.reset_if_changed(device, before)
        if changes:
            audit.record(s, user, request, AuditAction.UPDATE, "device", device_id, device.name or device_id,
                         changes=changes, verification=device.verification)
        s.flush()
        out = scoped_device(s, user.scope, device_id)
    system.registry.refresh()
    return out


@router.delete("/{device_id:path}", status_code=204)
def delete_device(device_id: DevicePath, request: Request, system: System, user: Admin) -> Response:
    with system.sessions.begin() as s:
        device = s.get(Device, device_id)
        if device is None:
            not_found("设备", "device", device_id)
        s.delete(device)
        audit.record(s, user, request, AuditAction.DELETE, "device", device_id, device.name or device_id,
                     institution_id=device.institution_id, profile=device.profile)
    system.registry.refresh()
    return Response(status_code=204)
