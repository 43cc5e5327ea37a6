"""Canonical domain types every device profile decodes into (see ../shared/DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    PANIC = "alarm.panic"
    SMOKE = "alarm.smoke"
    GAS = "alarm.gas"
    WATER_LEAK = "alarm.water_leak"
    INTRUSION = "alarm.intrusion"
    DOOR = "alarm.door"
    BATTERY_LOW = "fault.battery_low"
    TAMPER = "fault.tamper"
    SENSOR_FAULT = "fault.sensor"
    CO2_HIGH = "env.co2_high"
    HCHO_HIGH = "env.hcho_high"
    PM25_HIGH = "env.pm25_high"
    FRIDGE_WARM = "env.fridge_warm"
    OFFLINE = "device.offline"
    ONLINE = "device.online"
    TEST = "test"


# Alarms that must never be silenced, batched, rate-limited or dropped.
LIFE_SAFETY: frozenset[EventType] = frozenset({EventType.PANIC, EventType.SMOKE, EventType.GAS})


class EventState(StrEnum):
    ACTIVE = "active"
    CLEAR = "clear"


# One unit per metric, so a number in storage always means the same thing.
METRIC_UNITS: dict[str, str] = {
    "temperature": "°C",
    "temperature_probe2": "°C",  # a two-probe logger's second probe (fridge + freezer, Milesight TS302)
    "humidity": "%RH",
    "pressure": "hPa",
    "co2": "ppm",
    "pm1": "µg/m³",
    "pm25": "µg/m³",
    "pm10": "µg/m³",
    "tvoc": "mg/m³",
    "tvoc_ppb": "ppb",
    "hcho": "mg/m³",
    "gas_density": "%LEL",
    "nh3": "ppm",  # odour sensors (Milesight GS301)
    "h2s": "ppm",
    "illuminance": "lx",
    "light_level": "level",
    "battery": "%",
    "voltage": "V",
    "rssi": "dBm",
    "snr": "dB",
    "linkquality": "lqi",
}


@dataclass(slots=True)
class Reading:
    device_id: str
    metric: str
    value: float
    ts: datetime  # aware, UTC
    institution_id: str | None = None

    @property
    def unit(self) -> str:
        return METRIC_UNITS[self.metric]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "reading",
            "device_id": self.device_id,
            "institution_id": self.institution_id,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "ts": self.ts.isoformat(),
        }


@dataclass(slots=True)
class Event:
    device_id: str
    type: EventType
    state: EventState
    ts: datetime  # aware, UTC
    institution_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def life_safety(self) -> bool:
        return self.type in LIFE_SAFETY

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "event",
            "device_id": self.device_id,
            "institution_id": self.institution_id,
            "type": self.type.value,
            "state": self.state.value,
            "ts": self.ts.isoformat(),
            "detail": self.detail,
        }
