"""The acknowledge link in every notification.

Opening it changes nothing: chat apps (WeChat, DingTalk, Feishu) and mail scanners fetch links to build
previews, so ``GET /ack/<token>`` only shows the incident and a button. The button posts the token
(``POST /ack``, a form field: the signed token is the credential) and that acknowledges the incident and
stops its escalation. Small and self-contained: inline CSS, no scripts, nothing from a CDN.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from alerting.ack_links import BadLink, verify_token
from alerting.engine import TransitionError
from alerting.messages import SHANGHAI, TYPE_NAMES
from alerting.models import Contact, Incident
from anxin.db import Device, Institution
from api.deps import Runtime

MAX_DB_ID = 2**63 - 1
MAX_FORM_BYTES = 4096

STATE_NAMES: dict[str, tuple[str, str]] = {
    "triggered": ("待处理", "Waiting for someone"),
    "acknowledged": ("已确认", "Acknowledged"),
    "dispatched": ("已出警 / 已派人", "Dispatched"),
    "resolved": ("已处理", "Resolved"),
    "reviewed": ("已复核", "Reviewed"),
}

# Links carry their credential: never cached, never sent on as a Referer, never indexed or framed.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
}

_CSS = """body{font-family:system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;
background:#f4f5f7;color:#1d2129}main{max-width:30rem;margin:0 auto;padding:1rem}
.card{background:#fff;border-radius:12px;padding:1.2rem;box-shadow:0 1px 3px #0002}
h1{font-size:1.35rem;margin:0 0 .2rem}.en{color:#5c6370;font-size:.9rem}dl{margin:1rem 0}
dt{color:#5c6370;font-size:.85rem;margin-top:.6rem}dd{margin:0;font-size:1.05rem}
.alarm h1{color:#c0262d}.drill{background:#fff3cd;padding:.3rem .6rem;border-radius:6px}
button{width:100%;font-size:1.2rem;padding:1rem;border:0;border-radius:10px;background:#c0262d;color:#fff}
.note{padding:.8rem;border-radius:8px;background:#e8f5e9;margin-bottom:1rem}.bad{background:#fdecea}"""


@dataclass(frozen=True, slots=True)
class IncidentView:
    id: int
    type: str
    state: str
    drill: bool
    institution: str
    place: str
    device_id: str
    opened_at: datetime
    acknowledged_at: datetime | None
    contact: str


def ack_router(gateway: Runtime) -> APIRouter:
    router = APIRouter(tags=["acknowledge link"])

    def secrets() -> list[bytes]:
        s = gateway.settings
        return [s.alerting_secret.encode(), *(p.encode() for p in s.alerting_secrets_previous)]

    def check(token: str) -> tuple[int, str]:
        if gateway.alerting is None:
            raise _Refused(404, "告警功能未启用", "Alerting is disabled.")
        try:
            return verify_token(secrets(), token)
        except BadLink as exc:
            zh = "链接已过期" if "expired" in str(exc) else "链接无效"
            raise _Refused(403, zh, f"This link is invalid or has expired ({exc}).") from None

    def load(incident_id: int, contact_id: str) -> IncidentView:
        with gateway.sessions() as s:
            incident = s.get(Incident, incident_id) if 0 < incident_id <= MAX_DB_ID else None
            if incident is None:
                raise _Refused(404, f"没有事件 {incident_id}", f"No incident {incident_id}.")
            inst = s.get(Institution, incident.institution_id) if incident.institution_id else None
            device = s.get(Device, incident.device_id)
            contact = s.get(Contact, contact_id)
            return IncidentView(
                incident.id, incident.type, incident.state, incident.drill, inst.name if inst else "未登记机构",
                (device.room or device.name) if device else "", incident.device_id, incident.opened_at,
                incident.acknowledged_at, contact.name if contact else contact_id)

    @router.get("/ack/{token}", response_class=HTMLResponse)
    def show(token: str) -> HTMLResponse:
        """Shows the incident; changes nothing (link previews fetch this)."""
        try:
            incident_id, contact_id = check(token)
            return _page(_card(load(incident_id, contact_id), token))
        except _Refused as refused:
            return refused.page()

    @router.post("/ack", response_class=HTMLResponse)
    async def acknowledge(request: Request) -> HTMLResponse:
        """The page's button: acknowledges the incident and stops its escalation."""
        body = await request.body()
        fields = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"))
        token = (fields.get("token") or [""])[0]
        try:
            incident_id, contact_id = check(token)
            view = await run_in_threadpool(load, incident_id, contact_id)  # 404 before any change
            assert gateway.alerting is not None
            try:
                await run_in_threadpool(gateway.alerting.acknowledge, incident_id, f"contact:{contact_id}", "link")
                note = _note("", "已确认收到，升级通知已停止。请尽快处置。",
                             "Acknowledged: escalation stopped. Please act now.")
            except TransitionError:
                note = _note("", "该事件已由他人确认或处理。",
                             "Someone has already acknowledged or handled this incident.")
            view = await run_in_threadpool(load, incident_id, contact_id)
            return _page(note + _card(view, token))
        except _Refused as refused:
            return refused.page()

    return router


def _card(v: IncidentView, token: str) -> str:
    zh, en = TYPE_NAMES.get(v.type, (v.type, v.type))
    state_zh, state_en = STATE_NAMES.get(v.state, (v.state, v.state))
    opened = v.opened_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    rows = [("机构 Institution", v.institution), ("位置 Room", v.place or "-"), ("设备 Device", v.device_id),
            ("时间 Time (北京时间)", opened), ("状态 State", f"{state_zh} {state_en}"),
            ("事件编号 Incident", str(v.id)), ("接收人 Recipient", v.contact)]
    if v.acknowledged_at is not None:
        rows.append(("确认时间 Acknowledged", v.acknowledged_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(val)}</dd>" for k, val in rows)
    drill = '<p class="drill">演练 Drill</p>' if v.drill else ""
    klass = "card alarm" if v.type.startswith("alarm.") else "card"
    button = ""
    if v.state == "triggered":
        # "../ack" resolves to the sibling of /ack/<token>, so the page also works behind a path prefix.
        button = (f'<form method="post" action="../ack"><input type="hidden" name="token" value="{_e(token)}">'
                  '<button type="submit">确认收到 Acknowledge</button></form>')
    return (f'<section class="{klass}">{drill}<h1>{_e(zh)}</h1><div class="en">{_e(en)}</div>'
            f"<dl>{dl}</dl>{button}</section>")


def _note(klass: str, zh: str, en: str) -> str:
    return f'<p class="note {klass}">{_e(zh)}<br><span class="en">{_e(en)}</span></p>'


def _page(content: str, status: int = 200) -> HTMLResponse:
    text = ('<!doctype html><html lang="zh-CN"><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>安心 Anxin</title><style>{_CSS}</style><main>{content}</main></html>")
    return HTMLResponse(text, status_code=status, headers=HEADERS)


class _Refused(Exception):
    """An answer shown as a page (people open these links on their phones), not as JSON."""

    def __init__(self, status: int, zh: str, en: str) -> None:
        super().__init__(en)
        self.status, self.zh, self.en = status, zh, en

    def page(self) -> HTMLResponse:
        return _page(_note("bad", self.zh, self.en), self.status)


def _e(text: str) -> str:
    return html.escape(text, quote=True)
