"""The acknowledge link in every notification, as a phone page.

Opening it changes nothing: chat apps (WeChat, DingTalk, Feishu) and mail scanners fetch links to build
previews, so ``GET /ack/<token>`` only shows the incident (who else has acknowledged it, and when) and two
forms. Each form posts the token (the signed token is the credential; no login): ``POST /ack``
acknowledges and stops the escalation, ``POST /ack/dispatch`` records that a guard was sent, with the
guard's name. The page is rendered with the console's templates but stays self-contained: its CSS is
inlined, no scripts, nothing fetched; never cached, never sent on as a Referer, never indexed or framed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from alerting.ack_links import BadLink, verify_token
from alerting.engine import TransitionError
from alerting.messages import TYPE_NAMES
from alerting.models import Contact, Incident, TimelineEntry
from anxin.db import Device, Institution
from api.console.render import STATIC, local, templates
from api.deps import Runtime

MAX_DB_ID = 2**63 - 1
MAX_FORM_BYTES = 4096
MAX_GUARD = 100

STATE_NAMES: dict[str, tuple[str, str]] = {
    "triggered": ("待处理", "Waiting for someone"),
    "acknowledged": ("已确认", "Acknowledged"),
    "dispatched": ("已出警 / 已派人", "Dispatched"),
    "resolved": ("已处理", "Resolved"),
    "reviewed": ("已复核", "Reviewed"),
}

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
}

# The console's stylesheet and the page's own, inlined: one request on a slow phone, nothing else fetched.
CSS = (STATIC / "console.css").read_text(encoding="utf-8") + (STATIC / "ack.css").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Handled:
    """Someone who acknowledged or dispatched: shown so the next person knows it is in hand."""

    action: str
    who: str
    at: datetime
    guard: str = ""


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
    handled: list[Handled] = field(default_factory=list)

    @property
    def names(self) -> tuple[str, str]:
        return TYPE_NAMES.get(self.type, (self.type, self.type))

    @property
    def state_names(self) -> tuple[str, str]:
        return STATE_NAMES.get(self.state, (self.state, self.state))


@dataclass(frozen=True, slots=True)
class Note:
    zh: str
    en: str
    bad: bool = False


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
            entries = list(s.scalars(select(TimelineEntry).where(
                TimelineEntry.incident_id == incident_id, TimelineEntry.action.in_(("acknowledged", "dispatched")))
                .order_by(TimelineEntry.id)))
            contacts = {c.id: c.name for c in s.scalars(select(Contact).where(Contact.id.in_(
                {e.actor.removeprefix("contact:") for e in entries if e.actor.startswith("contact:")})))}
            handled = [Handled(e.action, _who(e.actor, contacts), e.at, _guard(e.detail)) for e in entries]
            return IncidentView(
                incident.id, incident.type, incident.state, incident.drill, inst.name if inst else "未登记机构",
                (device.room or device.name) if device else "", incident.device_id, incident.opened_at,
                incident.acknowledged_at, contact.name if contact else contact_id, handled)

    def render(request: Request, view: IncidentView | None, token: str = "", note: Note | None = None,
               status: int = 200) -> HTMLResponse:
        response = templates.TemplateResponse(request, "ack.html", {
            "incident": view, "token": token, "note": note, "local": local, "css": CSS, "max_guard": MAX_GUARD},
            status_code=status)
        response.headers.update(HEADERS)
        return response

    async def form(request: Request) -> dict[str, str]:
        body = await request.body()
        fields = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"))
        return {k: v[0] for k, v in fields.items() if v}

    async def act(request: Request, to: str, guard: str = "") -> HTMLResponse:
        token = (await form(request)).get("token", "")
        try:
            incident_id, contact_id = check(token)
            view = await run_in_threadpool(load, incident_id, contact_id)  # 404 before any change
            if to == "dispatched" and not guard:
                missing = Note("请填写派出的保安姓名。", "Enter the name of the guard you sent.", bad=True)
                return render(request, view, token, missing, 400)
            note = await run_in_threadpool(transition, incident_id, contact_id, to, guard)
            return render(request, await run_in_threadpool(load, incident_id, contact_id), token, note)
        except _Refused as refused:
            return render(request, None, note=Note(refused.zh, refused.en, bad=True), status=refused.status)

    def transition(incident_id: int, contact_id: str, to: str, guard: str) -> Note:
        assert gateway.alerting is not None
        actor = f"contact:{contact_id}"
        try:
            if to == "acknowledged":
                gateway.alerting.acknowledge(incident_id, actor, "link")
                return Note("已确认收到，升级通知已停止。请尽快处置。",
                            "Acknowledged: escalation stopped. Please act now.")
            gateway.alerting.transition(incident_id, "dispatched", actor, "link", guard=guard)
            return Note(f"已记录：已派 {guard} 前往现场。", f"Recorded: {guard} is on the way.")
        except TransitionError:
            return Note("该事件已由他人确认或处理。", "Someone has already acknowledged or handled this incident.")

    @router.get("/ack/{token}", response_class=HTMLResponse)
    def show(request: Request, token: str) -> HTMLResponse:
        """Shows the incident; changes nothing (link previews fetch this)."""
        try:
            incident_id, contact_id = check(token)
            return render(request, load(incident_id, contact_id), token)
        except _Refused as refused:
            return render(request, None, note=Note(refused.zh, refused.en, bad=True), status=refused.status)

    @router.post("/ack", response_class=HTMLResponse)
    async def acknowledge(request: Request) -> HTMLResponse:
        """The page's first button: acknowledges the incident and stops its escalation."""
        return await act(request, "acknowledged")

    @router.post("/ack/dispatch", response_class=HTMLResponse)
    async def dispatch(request: Request) -> HTMLResponse:
        """The page's second form: a guard was sent (acknowledges too, if nobody had)."""
        guard = " ".join((await form(request)).get("guard", "").split())[:MAX_GUARD]
        return await act(request, "dispatched", guard)

    return router


def _who(actor: str, contacts: dict[str, str]) -> str:
    if actor.startswith("contact:"):
        return contacts.get(actor.removeprefix("contact:"), actor.removeprefix("contact:"))
    return actor


def _guard(detail: dict[str, object]) -> str:
    guard = detail.get("guard")
    return guard if isinstance(guard, str) else ""


class _Refused(Exception):
    """An answer shown as a page (people open these links on their phones), not as JSON."""

    def __init__(self, status: int, zh: str, en: str) -> None:
        super().__init__(en)
        self.status, self.zh, self.en = status, zh, en
