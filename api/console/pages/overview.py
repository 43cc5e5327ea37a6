"""Overview pages (监管总览) for the health commission: the quarter's figures by district and institution with
charts, and an institution's drill-down listing its incidents of the quarter with their timelines inline.
Read-only (no forms but the header's language and logout); the figures come from api/routes/overview.py, so
the page and the API always agree. Other roles may open them too, limited to their scope like everything."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from alerting.drills import SHANGHAI, current_quarter, parse_quarter, quarter_bounds
from alerting.messages import CLOSURE_NAMES, TYPE_NAMES
from alerting.models import TimelineEntry
from api.console.render import language, page
from api.deps import CurrentUser, SessionDep
from api.routes import overview as ov
from api.routes.incidents import incident_rows
from api.routes.overview import InstitutionId, QuarterParam
from api.schemas import Overview

router = APIRouter(include_in_schema=False)

QUARTERS_OFFERED = 8  # the selector lists this many quarters back from the current one
STATE_NAMES: dict[str, tuple[str, str]] = {
    "triggered": ("待处理", "Triggered"), "acknowledged": ("已确认", "Acknowledged"),
    "dispatched": ("已派警", "Dispatched"), "resolved": ("已结案", "Resolved"), "reviewed": ("已复核", "Reviewed")}
ACTION_NAMES: dict[str, tuple[str, str]] = {
    **STATE_NAMES, "opened": ("报警触发", "Opened"), "event": ("再次上报", "Reported again"),
    "notified": ("已通知", "Notified"), "unrouted": ("无匹配路由", "No route"), "silenced": ("静默中", "Silenced"),
    "silence_bypassed": ("不受静默", "Silence bypassed"), "postponed": ("推迟", "Postponed"),
    "rate_limited": ("限流", "Rate limited"), "delivery_failed": ("通知失败", "Delivery failed"),
    "fallback": ("转值班台", "Fallback to duty"), "unroutable": ("无人可通知", "Nobody reachable"),
    "channel_failing": ("通道故障", "Channel failing"), "taken_over": ("发送接管", "Taken over"),
    "device_verified": ("设备已验证", "Device verified")}
NOT_CLOSED_NAME = ("未结案", "Not closed")
ROLE_NAMES: dict[str, tuple[str, str]] = {
    "police": ("公安", "police"), "fire": ("消防", "fire"), "contractor": ("安保", "contractor"),
    "institution": ("机构", "institution"), "duty": ("值班台", "duty desk"), "drill": ("演练接收人", "drill receivers")}
CHANNEL_NAMES: dict[str, tuple[str, str]] = {
    "api": ("控制台/API", "console/API"), "escalation": ("逐级通知", "escalation"),
    "notice": ("故障通知", "notice"), "link": ("确认链接", "ack link")}


class Labels:
    """Names of codes in the page's language (types, closure codes, states, timeline actions, durations)."""

    def __init__(self, lang: str) -> None:
        self.en = lang == "en"

    def _pick(self, names: dict[str, tuple[str, str]], key: str) -> str:
        zh, en = names.get(key, (key, key))
        return en if self.en else zh

    def type(self, key: str) -> str:
        return self._pick(TYPE_NAMES, key)

    def closure(self, key: str | None) -> str:
        return self._pick({**CLOSURE_NAMES, ov.NOT_CLOSED: NOT_CLOSED_NAME}, key or ov.NOT_CLOSED)

    def state(self, key: str) -> str:
        return self._pick(STATE_NAMES, key)

    def action(self, key: str) -> str:
        return self._pick(ACTION_NAMES, key)

    def roles(self, keys: list[str]) -> str:
        return ", ".join(self._pick(ROLE_NAMES, k) for k in keys)

    def channel(self, key: str) -> str:
        return self._pick(CHANNEL_NAMES, key)

    def duration(self, seconds: float | None) -> str:
        """A time to acknowledge as people say it; "—" when there is none to measure."""
        if seconds is None:
            return "—"
        s = round(seconds)
        if s < 60:
            return f"{s} s" if self.en else f"{s} 秒"
        if s < 3600:
            return f"{s // 60} min {s % 60:02d} s" if self.en else f"{s // 60} 分 {s % 60:02d} 秒"
        return f"{s // 3600} h {s % 3600 // 60:02d} min" if self.en else f"{s // 3600} 小时 {s % 3600 // 60:02d} 分"


def _quarter(text: str | None) -> tuple[int, int, str | None]:
    """The quarter asked for, or the current one and the malformed text (the page says what it expected)."""
    if text is None or not text.strip():
        return (*current_quarter(), None)
    try:
        return (*parse_quarter(text), None)
    except ValueError:
        return (*current_quarter(), text)


def _quarter_context(year: int, quarter: int) -> dict[str, Any]:
    start, end = quarter_bounds(year, quarter)
    now = current_quarter()
    offered = [ov.quarter_label(*ov.shift_quarter(*now, -n)) for n in range(QUARTERS_OFFERED)]
    label = ov.quarter_label(year, quarter)
    if label not in offered:
        offered.append(label)
    nxt = ov.shift_quarter(year, quarter, 1)
    return {"quarter": label, "starts": start.astimezone(SHANGHAI),
            "last_day": (end - timedelta(days=1)).astimezone(SHANGHAI),
            "previous": ov.quarter_label(*ov.shift_quarter(year, quarter, -1)),
            "next": None if ov.is_future(*nxt) else ov.quarter_label(*nxt),
            "this_quarter": ov.quarter_label(*now), "offered": offered}


def _chart(data: Overview, labels: Labels) -> dict[str, Any]:
    """What overview.js draws, already named in the page's language."""
    members = [m for d in data.districts for m in d.members]
    return {
        "types": [[k, labels.type(k), n] for k, n in data.totals.alarms_by_type.items()],
        "closures": [[k, labels.closure(k), n] for k, n in data.totals.alarms_by_closure.items()],
        "institutions": {"names": [m.name_en if labels.en and m.name_en else m.name for m in members],
                         "alarms": [m.alarms for m in members], "drill_alarms": [m.drill_alarms for m in members],
                         "open": [m.open_incidents for m in members]},
        "series": {"alarms": "Real alarms" if labels.en else "真实告警",
                   "drill_alarms": "Drill alarms" if labels.en else "演练告警",
                   "open": "Open now" if labels.en else "当前未结"},
    }


@router.get("/console/overview", response_class=HTMLResponse)
def show(request: Request, user: CurrentUser, s: SessionDep, quarter: QuarterParam = None) -> HTMLResponse:
    year, q, error = _quarter(quarter)
    data = ov.overview(s, user.scope, year, q)
    labels = Labels(language(request, user))
    return page(request, "overview.html", user, data=data, labels=labels, error=error, chart=_chart(data, labels),
                **_quarter_context(year, q))


@router.get("/console/overview/institutions/{institution_id}", response_class=HTMLResponse)
def institution_page(institution_id: InstitutionId, request: Request, user: CurrentUser, s: SessionDep,
                     quarter: QuarterParam = None) -> HTMLResponse:
    year, q, error = _quarter(quarter)
    inst = ov.institution_figures(s, user.scope, institution_id, year, q)  # 404 outside the scope
    incidents = incident_rows(s, ov.quarter_incidents(s, institution_id, year, q))
    timelines: dict[int, list[TimelineEntry]] = defaultdict(list)
    if incidents:
        for entry in s.scalars(select(TimelineEntry).where(TimelineEntry.incident_id.in_([i.id for i in incidents]))
                               .order_by(TimelineEntry.id)):
            timelines[entry.incident_id].append(entry)
    return page(request, "overview_institution.html", user, inst=inst, incidents=incidents, timelines=timelines,
                labels=Labels(language(request, user)), error=error, **_quarter_context(year, q))
