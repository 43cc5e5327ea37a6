"""Response models of the API (the OpenAPI document and its clients see these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


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


# --- commission overview (helper "commission"): figures by district and institution for a quarter ---------------


class Figures(BaseModel):
    """One institution's figures, or their sum over a district or the whole scope. Real alarms are the
    incidents opened in the quarter outside drill windows; drill alarms are counted apart."""

    institutions: int = 0
    open_incidents: int = 0  # real incidents open now (triggered, acknowledged, dispatched)
    open_life_safety: int = 0  # ... of which panic, smoke or gas
    alarms: int = 0  # real incidents opened in the quarter
    alarms_by_type: dict[str, int] = Field(default_factory=dict)  # event type -> real alarms
    # closure code -> real alarms resolved with it; "open" for those not resolved yet
    alarms_by_closure: dict[str, int] = Field(default_factory=dict)
    drill_alarms: int = 0  # incidents raised inside drill windows in the quarter
    acknowledged: int = 0  # real alarms of the quarter acknowledged (the median's sample)
    median_ack_s: float | None = None  # median opened -> acknowledged, seconds; None: nothing acknowledged
    drills: int = 0  # drill windows held in the quarter
    drills_compliant: int = 0  # institutions with the required drills held
    devices: int = 0
    devices_offline: int = 0  # whose latest availability event says offline
    devices_unverified: int = 0  # whose test press has not been seen end to end


class InstitutionFigures(Figures):
    id: str
    name: str
    name_en: str
    district: str


class DistrictFigures(Figures):
    name: str  # "" for institutions of no district
    name_en: str
    members: list[InstitutionFigures]


class Overview(BaseModel):
    quarter: str  # "2026Q4"
    starts_at: datetime  # the quarter on the Asia/Shanghai calendar, as UTC instants
    ends_at: datetime
    totals: Figures
    districts: list[DistrictFigures]


class InstitutionQuarter(BaseModel):
    """One institution's figures and its incidents opened in the quarter (drills included, flagged)."""

    quarter: str
    institution: InstitutionFigures
    incidents: list[IncidentOut]


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
