"""A small world for API and console tests: two districts, two institutions (A in 思明区, B in 湖里区),
their devices and contacts, a contractor for each, and one user per role and scope.

    with api_world(tmp_path) as world:
        http = world.client("director-a")        # logged in through the login form, CSRF header set
        http.get("/api/v1/incidents")

Every user's password is PASSWORD. ``world.system`` is the running Anxin (no MQTT unless a broker port
is given), ``world.app`` its FastAPI app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from alerting.models import Incident
from anxin.db import EventRecord
from api.models import LoginSession, Role, User
from api.security import add_user, create_api_key
from program.system import Anxin
from program.web import build_app
from tests.harness import gateway_settings, running_gateway

PASSWORD = "correct-horse-battery"


def world_registry(webhook_url: str = "http://127.0.0.1:9") -> dict[str, Any]:
    hook = webhook_url.rstrip("/")
    return {
        "districts": [{"name": "思明区", "name_en": "Siming"}, {"name": "湖里区", "name_en": "Huli"}],
        "institutions": [
            {"id": "inst-a", "name": "小太阳托育园", "name_en": "Little Sun Nursery", "district": "思明区"},
            {"id": "inst-b", "name": "贝贝托育中心", "name_en": "Beibei Childcare", "district": "湖里区"},
        ],
        "devices": [
            {"id": "sos-a", "institution": "inst-a", "profile": "zigbee2mqtt-sos-button", "name": "前台一键报警",
             "room": "前台"},
            {"id": "smoke-a", "institution": "inst-a", "profile": "zigbee2mqtt-smoke", "name": "午睡室烟感",
             "room": "午睡室"},
            {"id": "air-a", "institution": "inst-a", "profile": "zigbee2mqtt-air-quality", "name": "一班空气",
             "room": "一班"},
            {"id": "sos-b", "institution": "inst-b", "profile": "zigbee2mqtt-sos-button", "name": "前台一键报警",
             "room": "前台"},
            {"id": "smoke-b", "institution": "inst-b", "profile": "zigbee2mqtt-smoke", "name": "厨房烟感",
             "room": "厨房"},
        ],
        "contractors": [
            {"id": "ct-a", "name": "思明安保", "institutions": ["inst-a"]},
            {"id": "ct-b", "name": "湖里安保", "institutions": ["inst-b"]},
        ],
        "contacts": [
            {"id": "police-siming", "role": "police", "district": "思明区", "name": "思明公安",
             "webhook_url": f"{hook}/police-siming"},
            {"id": "police-huli", "role": "police", "district": "湖里区", "name": "湖里公安",
             "webhook_url": f"{hook}/police-huli"},
            {"id": "fire-siming", "role": "fire", "district": "思明区", "name": "思明消防",
             "webhook_url": f"{hook}/fire-siming"},
            {"id": "fire-huli", "role": "fire", "district": "湖里区", "name": "湖里消防",
             "webhook_url": f"{hook}/fire-huli"},
            {"id": "contractor-a", "role": "contractor", "institution": "inst-a", "name": "思明安保值班",
             "webhook_url": f"{hook}/contractor-a"},
            {"id": "contractor-b", "role": "contractor", "institution": "inst-b", "name": "湖里安保值班",
             "webhook_url": f"{hook}/contractor-b"},
            {"id": "staff-a", "role": "institution", "institution": "inst-a", "name": "A 园长",
             "webhook_url": f"{hook}/staff-a"},
            {"id": "staff-b", "role": "institution", "institution": "inst-b", "name": "B 园长",
             "webhook_url": f"{hook}/staff-b"},
            {"id": "duty", "role": "duty", "name": "平台值班台", "webhook_url": f"{hook}/duty"},
        ],
    }


# username -> (role, scope keyword arguments of add_user)
USERS: dict[str, tuple[Role, dict[str, Any]]] = {
    "admin": (Role.ADMIN, {}),
    "commission-siming": (Role.COMMISSION, {"districts": ["思明区"]}),
    "contractor-a": (Role.CONTRACTOR, {"contractor_id": "ct-a"}),
    "contractor-b": (Role.CONTRACTOR, {"contractor_id": "ct-b"}),
    "director-a": (Role.INSTITUTION, {"institution_id": "inst-a"}),
    "director-b": (Role.INSTITUTION, {"institution_id": "inst-b"}),
}
# What each user's scope covers (for assertions).
SEES: dict[str, set[str]] = {"admin": {"inst-a", "inst-b"}, "commission-siming": {"inst-a"},
                             "contractor-a": {"inst-a"}, "contractor-b": {"inst-b"},
                             "director-a": {"inst-a"}, "director-b": {"inst-b"}}


@dataclass
class World:
    system: Anxin
    app: FastAPI
    clients: dict[str, TestClient] = field(default_factory=dict)

    def client(self, username: str) -> TestClient:
        """A client logged in as ``username`` through the login form, sending its CSRF token."""
        if username not in self.clients:
            http = TestClient(self.app, follow_redirects=False)
            r = http.post("/login", data={"username": username, "password": PASSWORD})
            assert r.status_code == 303, (username, r.status_code, r.text[:300])
            with self.system.sessions() as s:
                user = s.scalar(select(User).where(User.username == username))
                assert user is not None
                csrf = s.scalar(select(LoginSession.csrf).where(LoginSession.user_id == user.id)
                                .order_by(LoginSession.created_at.desc()).limit(1))
            http.headers["X-CSRF-Token"] = csrf or ""
            self.clients[username] = http
        return self.clients[username]

    def anonymous(self) -> TestClient:
        return TestClient(self.app, follow_redirects=False)

    def api_key(self, username: str) -> str:
        with self.system.sessions.begin() as s:
            user = s.scalar(select(User).where(User.username == username))
            assert user is not None
            return create_api_key(s, user, "test")

    def add_event(self, device_id: str, institution_id: str, type_: str, state: str = "active") -> int:
        """An event straight into the store (as the pipeline would): the engine opens its incident."""
        now = datetime.now(UTC)
        with self.system.sessions.begin() as s:
            row = EventRecord(device_id=device_id, institution_id=institution_id, type=type_, state=state, ts=now,
                              received_at=now, source="test", detail={})
            s.add(row)
            s.flush()
            return int(row.id)

    def open_incident(self, device_id: str, institution_id: str, type_: str = "alarm.panic",
                      timeout: float = 20.0) -> int:
        """Stores an alarm event and waits for the alerting engine to open its incident; returns its id."""
        import time

        self.add_event(device_id, institution_id, type_)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.system.sessions() as s:
                found = s.scalar(select(Incident.id).where(Incident.device_id == device_id, Incident.type == type_,
                                                           Incident.state == "triggered").order_by(Incident.id.desc()))
            if found is not None:
                return int(found)
            time.sleep(0.05)
        raise AssertionError(f"no incident opened for {device_id} {type_}")


def add_world_users(system: Anxin) -> None:
    with system.sessions.begin() as s:
        for username, (role, scope) in USERS.items():
            add_user(s, username, PASSWORD, role, display_name=username, **scope)


@contextmanager
def api_world(tmp_path: Path, *, webhook_url: str = "http://127.0.0.1:9", mqtt_port: int | None = None,
              **settings: Any) -> Iterator[World]:
    values: dict[str, Any] = {"telemetry_sink": "sqlite", "public_url": "http://testserver",
                              "alarm_lane": mqtt_port is not None, **settings}
    s = gateway_settings(tmp_path, mqtt_port=mqtt_port or 1, **values)
    with running_gateway(s, registry=world_registry(webhook_url), mqtt=mqtt_port is not None) as system:
        assert isinstance(system, Anxin)
        add_world_users(system)
        yield World(system, build_app(system))
