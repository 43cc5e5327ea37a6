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
