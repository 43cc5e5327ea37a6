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


# --- h-board: the contractor's board, incident page and device health -------------------------------------


class ContactNotification(BaseModel):
    """Who was notified of an incident, and whether it reached them (all attempts to one contact)."""

    contact_id: str
    name: str
    role: str  # police, fire, contractor, institution, duty, drill
    # alarm: notified of the incident; notice: told that another contact cannot be reached;
    # feedback:acknowledged / feedback:dispatched: told who has it
    purpose: str
    channels: list[str]
    status: str  # the best outcome of any attempt: delivered | sending | unknown | failed | permanent
    delivered: bool
    attempts: int
    first_at: datetime
    delivered_at: datetime | None
    last_error: str  # the newest failed attempt's reason ("" if none failed)


class BoardIncident(IncidentOut):
    type_zh: str
    type_en: str
    life_safety: bool
    guard: str  # the guard sent when it was dispatched ("" if none)
    last_entry_id: int  # its newest timeline entry: a live page ignores feed messages older than this
    notifications: list[ContactNotification]


class BoardOut(BaseModel):
    cursor: str  # the live feed's cursor taken before the query: ?after= it misses nothing since
    incidents: list[BoardIncident]  # open, life-safety first, then oldest first


class DeviceHealthOut(BaseModel):
    device_id: str
    name: str
    institution_id: str | None
    institution: str
    room: str
    profile: str
    last_seen: datetime | None  # newest reading or event received from it
    silent_limit_s: int  # heartbeat interval x offline factor, or 24 h when its profile names none
    verification: str  # verified | unverified (commissioning)
    problems: list[str]  # DeviceProblem values, empty when healthy
