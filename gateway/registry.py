"""Device registry snapshot: external device id -> institution and assigned profile.

The gateway reads it per message, so it is an in-memory dict swapped whole on refresh.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from anxin.db import Device, Institution

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    institution_id: str | None
    profile: str | None
    room: str = ""


class Registry:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._devices: dict[str, DeviceInfo] = {}
        self._assigned: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        with self._sessions() as s:
            rows = s.execute(select(Device.id, Device.institution_id, Device.profile, Device.room)).all()
        devices = {r.id: DeviceInfo(r.institution_id, r.profile, r.room or "") for r in rows}
        self._devices = devices  # atomic swap: readers never see a half-built dict
        self._assigned = {k: v.profile for k, v in devices.items() if v.profile}

    def lookup(self, device_id: str) -> DeviceInfo | None:
        return self._devices.get(device_id)

    def items(self) -> list[tuple[str, DeviceInfo]]:
        return list(self._devices.items())

    @property
    def assigned(self) -> Mapping[str, str]:
        return self._assigned

    def __len__(self) -> int:
        return len(self._devices)

    def start(self, interval_s: float = 30.0) -> None:
        """Refresh in the background so devices added through the API are picked up."""

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception:  # the last good snapshot stays in use
                    log.exception("registry refresh failed")

        self._thread = threading.Thread(target=loop, name="registry-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def import_registry(sessions: sessionmaker[Session], data: Mapping[str, Any]) -> tuple[int, int]:
    """Upsert ``{"institutions": [...], "devices": [...], "contacts": [...], "drills": [...],
    "silences": [...]}``; returns the (institutions, devices) counts."""
    from alerting import commissioning, silences
    from alerting.models import Contact, DrillWindow

    insts = list(data.get("institutions") or [])
    devs = list(data.get("devices") or [])
    with sessions.begin() as s:
        for i in insts:
            s.merge(Institution(id=str(i["id"]), name=i["name"], name_en=i.get("name_en", ""),
                                district=i.get("district", "")))
        s.flush()
        for d in devs:
            device = Device(id=str(d["id"]), institution_id=d.get("institution"), profile=d.get("profile"),
                            name=d.get("name", ""), room=d.get("room", ""))
            commissioning.reset_if_changed(device, s.get(Device, device.id))
            s.merge(device)
        for c in data.get("contacts") or []:
            s.merge(Contact(
                id=str(c["id"]), role=c["role"], name=c.get("name", ""), institution_id=c.get("institution"),
                district=c.get("district", ""), phone=str(c.get("phone", "")), email=c.get("email", ""),
                webhook_url=c.get("webhook_url", ""), webhook_secret=c.get("webhook_secret", ""),
                channel=c.get("channel", ""), channel_address=c.get("channel_address", ""),
                channel_secret=c.get("channel_secret", "")))
        for w in data.get("drills") or []:
            s.add(DrillWindow(institution_id=w["institution"], starts_at=_utc(w["starts_at"]),
                              ends_at=_utc(w["ends_at"]), note=w.get("note", "")))
        for x in data.get("silences") or []:
            silences.add(s, kind=x.get("kind", "silence"), institution=x.get("institution"), device=x.get("device"),
                         types=x.get("types"), starts_at=_utc(x["starts_at"]), ends_at=_utc(x["ends_at"]),
                         created_by=x.get("created_by", "registry"), reason=x.get("reason", ""))
    return len(insts), len(devs)


def _utc(value: Any) -> datetime:
    """A YAML timestamp or ISO text; a time without offset is Asia/Shanghai (people write local times)."""
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return (dt if dt.tzinfo else dt.replace(tzinfo=ZoneInfo("Asia/Shanghai"))).astimezone(UTC)
