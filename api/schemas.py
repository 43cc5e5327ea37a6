"""Response models of the API (the OpenAPI document and its clients see these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class IncidentOut(BaseModel):
    id: int
    type: str
    severity: str
    state: str
    drill: bool
    institution_id: str | None
    institution: str | None = None  # its name (zh-CN)
    device_id: str
    room: str = ""
    route: str
    policy: str
    event_count: int
    closure_code: str | None
    fallback: str
    opened_at: datetime
    acknowledged_at: datetime | None
    dispatched_at: datetime | None
    resolved_at: datetime | None
    reviewed_at: datetime | None


class TimelineOut(BaseModel):
    id: int
    at: datetime
    action: str
    actor: str
    channel: str
    detail: dict[str, Any]


class DeliveryOut(BaseModel):
    at: datetime
    contact_id: str
    channel: str
    status: str
    attempt: int
    detail: str


class IncidentDetail(IncidentOut):
    timeline: list[TimelineOut]
    deliveries: list[DeliveryOut]


class Me(BaseModel):
    username: str
    display_name: str
    role: str
    institutions: list[str] | None  # None: every institution
    lang: str


# --- h-inst: institution page (devices, environment, drill windows, device tests) ---------------------

class LimitOut(BaseModel):
    """A threshold rule's limit as it applies to one device (overrides applied)."""

    rule: str
    above: float
    clear_below: float
    statistic: str  # min | max | mean over window_s
    window_s: int


class PointOut(BaseModel):
    at: datetime  # the bucket's start, UTC
    value: float  # mean of the bucket


class ReadingsOut(BaseModel):
    device_id: str
    metric: str
    unit: str
    hours: int
    bucket_s: int
    limit: LimitOut | None
    points: list[PointOut]


class DeviceStateOut(BaseModel):
    id: str
    name: str
    room: str
    profile: str
    kind: str | None
    status: str  # online | offline (offline event active) | quiet (nothing for 24 h) | never (nothing yet)
    last_seen: datetime | None
    battery: float | None  # %, newest reading
    verification: str  # unverified | verified
    verified_at: datetime | None
    verified_by: str


class EnvValueOut(BaseModel):
    device_id: str
    room: str
    metric: str
    unit: str
    value: float
    at: datetime
    limit: LimitOut | None
    above_limit: bool  # this newest value is above the limit (the rule itself judges a window)


class DrillWindowOut(BaseModel):
    id: int
    institution_id: str
    starts_at: datetime
    ends_at: datetime
    note: str
    state: str  # upcoming | active | past (| cancelled, in the answer that cancels it)


class InstitutionSummary(BaseModel):
    id: str
    name: str
    name_en: str
    district: str
    can_act: bool
    drill_receivers: int  # contacts with the drill role serving this institution (test presses go there)
    active_drill: DrillWindowOut | None
    devices: list[DeviceStateOut]
    environment: list[EnvValueOut]
    open_incidents: list[IncidentOut]
    recent_incidents: list[IncidentOut]
    drill_windows: list[DrillWindowOut]
