"""Device registry snapshot: external device id -> institution and assigned profile.

The gateway reads it per message, so it is an in-memory dict swapped whole on refresh.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from anxin.db import Device

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
