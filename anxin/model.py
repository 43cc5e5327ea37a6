"""Canonical domain types every device profile decodes into (see ../shared/DESIGN.md)."""

from __future__ import annotations

import math
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


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric's one unit (so a number in storage always means the same thing) and the physically
    plausible range of its values: a reading outside it is a broken sensor, not a measurement."""

    unit: str
    low: float
    high: float

    def check(self, value: float) -> str | None:
        """Why ``value`` cannot be a real measurement, or None when it can."""
        if not math.isfinite(value):
            return "not a finite number"
        if not self.low <= value <= self.high:
            return f"outside the plausible range {self.low:g}..{self.high:g} {self.unit}"
        return None


METRICS: dict[str, Metric] = {
    "temperature": Metric("°C", -60, 150),
    "temperature_probe2": Metric("°C", -60, 150),  # a two-probe logger's second probe (Milesight TS302)
    "humidity": Metric("%RH", 0, 100),
    "pressure": Metric("hPa", 300, 1100),
    "co2": Metric("ppm", 250, 40000),  # below the outdoor level (~420 ppm) only a faulty sensor reads
    "pm1": Metric("µg/m³", 0, 1000),
    "pm25": Metric("µg/m³", 0, 1000),
    "pm10": Metric("µg/m³", 0, 2000),
    "tvoc": Metric("mg/m³", 0, 100),
    "tvoc_ppb": Metric("ppb", 0, 60000),
    "hcho": Metric("mg/m³", 0, 10),
    # Xiaomi JTQJ detectors report a raw density (237 with a lighter under it), not a percentage.
    "gas_density": Metric("%LEL", 0, 65535),
    "nh3": Metric("ppm", 0, 1000),  # odour sensors (Milesight GS301)
    "h2s": Metric("ppm", 0, 1000),
    "illuminance": Metric("lx", 0, 200000),  # direct sunlight is about 120 000 lx
    "light_level": Metric("level", 0, 100),
    "battery": Metric("%", 0, 100),
    "voltage": Metric("V", 0, 500),
    "rssi": Metric("dBm", -200, 0),
    "snr": Metric("dB", -50, 50),
    "linkquality": Metric("lqi", 0, 255),
}
METRIC_UNITS: dict[str, str] = {name: m.unit for name, m in METRICS.items()}


class Quality(StrEnum):
    """Whether a stored value counts as a measurement. An implausible one (outside its metric's range) is
    kept for engineers, apart from the metric's data (InfluxDB measurement ``implausible``, SQLite table
    ``implausible_readings``), so thresholds, dashboards and ``SELECT … FROM co2`` never see it."""

    GOOD = "good"
    IMPLAUSIBLE = "implausible"


@dataclass(slots=True)
class Reading:
    device_id: str
    metric: str
    value: float
    ts: datetime  # aware, UTC
    institution_id: str | None = None
    quality: Quality = Quality.GOOD

    @property
    def unit(self) -> str:
        return METRIC_UNITS[self.metric]

    def as_dict(self) -> dict[str, Any]:
        out = {
            "kind": "reading",
            "device_id": self.device_id,
            "institution_id": self.institution_id,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "ts": self.ts.isoformat(),
        }
        if self.quality is not Quality.GOOD:
            out["quality"] = self.quality.value
        return out


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
