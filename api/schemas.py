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


# ---- Administration (helper "admin"): districts, institutions, devices, contacts, contractors, users,
# policies, dead letters, audit log ----


class DistrictOut(BaseModel):
    name: str
    name_en: str
    institutions: int  # how many institutions lie in it


class InstitutionOut(BaseModel):
    id: str
    name: str
    name_en: str
    district: str
    created_at: datetime
    devices: int


class DeviceOut(BaseModel):
    id: str
    institution_id: str | None
    institution: str  # its name (zh-CN), "" when none
    profile: str
    name: str
    room: str
    verification: str  # unverified | verified (commissioning)
    verified_at: datetime | None
    verified_by: str
    created_at: datetime


class ContactOut(BaseModel):
    id: str
    role: str
    name: str
    institution_id: str | None
    district: str
    phone: str
    email: str
    webhook_url: str
    webhook_secret_set: bool  # secrets are write-only: only whether one is set
    channel: str
    channel_address: str
    channel_secret_set: bool
    channels: list[str]  # how it can be reached: sms/voice (phone), webhook, email, dingtalk...


class ContractorOut(BaseModel):
    id: str
    name: str
    name_en: str
    institutions: list[str]
    users: int


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: str
    institution_id: str | None
    contractor_id: str | None
    districts: list[str]
    lang: str
    active: bool
    locked: bool  # locked for a while after wrong passwords
    created_at: datetime
    api_keys: int  # keys not revoked


class ApiKeyOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


class NewApiKey(ApiKeyOut):
    key: str  # shown this once, never stored


class PoliciesOut(BaseModel):
    routes_file: str
    thresholds_file: str
    routing: dict[str, Any]  # alerting/routing.py RoutingConfig
    thresholds: dict[str, Any]  # alerting/thresholds.py ThresholdConfig


class DeadLetterOut(BaseModel):
    id: int
    received_at: datetime
    source: str  # "mqtt:<topic>" or "http:<profile>"
    reason: str
    size: int  # bytes kept
    preview: str  # the start of the payload, as text when it is text, else hex
    preview_kind: str  # text | hex
    replayed_at: datetime | None  # set once a replay succeeded
    replayed_by: str
    replay_result: str


class DeadLetterDetail(DeadLetterOut):
    text: str | None  # the whole payload as UTF-8 text, None when it is not text
    hex: str


class ReplayOut(BaseModel):
    ok: bool
    message: str
    dead_letter: DeadLetterOut


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    role: str
    ip: str
    action: str
    resource: str
    resource_id: str
    summary: str
    detail: dict[str, Any]
