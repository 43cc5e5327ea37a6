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
