"""Decode a payload through the shipped profiles, as the gateway does, for profile tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from anxin.model import Event, Reading
from gateway.profiles import ProfileSet, load_profiles


@cache
def profile_set() -> ProfileSet:
    return ProfileSet(load_profiles())


@dataclass
class Result:
    profile: str
    device_id: str
    readings: list[Reading]
    events: list[Event]

    @property
    def values(self) -> dict[str, float]:
        """metric -> value (profiles give each metric once per message)."""
        out: dict[str, float] = {}
        for r in self.readings:
            assert r.metric not in out, f"{r.metric} twice"
            out[r.metric] = r.value
        return out

    @property
    def states(self) -> list[tuple[str, str]]:
        return [(e.type.value, e.state.value) for e in self.events]


def decode(topic: str, payload: bytes | str, *, profile: str | None = None, raw_bytes: bool = False,
           received_at: datetime | None = None, assigned: dict[str, str] | None = None) -> Result:
    data = payload.encode() if isinstance(payload, str) else payload
    m = profile_set().match(topic, data, profile=profile, raw_bytes=raw_bytes, assigned=assigned)
    d = m.profile.decode(m.doc, m.device_id, received_at or datetime.now(UTC))
    return Result(d.profile, d.device_id, d.readings, d.events)
