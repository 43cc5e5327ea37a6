"""The device-profile file format (YAML, one file per device model), validated with pydantic.

See README.md "Device profiles" for the documented format; every field here is described there.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from anxin.model import METRIC_UNITS, EventType
from gateway.paths import parse_path
from gateway.timestamps import TimestampFormat
from gateway.topics import compile_template
from gateway.values import converter

DeviceKind = Literal[
    "panic_button", "smoke", "gas", "water_leak", "door", "env_monitor", "temp_humidity",
    "fridge_temp", "alarm_host", "gateway", "generic",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_path(v: str | None) -> str | None:
    if v is not None and v != "$":
        parse_path(v)
    return v


def _check_paths(v: list[str]) -> list[str]:
    for p in v:
        _check_path(p)
    return v


class Condition(_Strict):
    """Holds when the value at ``path`` is present (``present``), equals ``equals`` or one of ``in``,
    or is text containing any of ``contains`` (platforms that only say it in words: "报警_251防区主机SOS")."""

    path: str
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    present: bool | None = None
    contains: list[str] | None = None

    _v = field_validator("path")(_check_path)

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        tests = [self.equals is not None, self.in_ is not None, self.present is not None, self.contains is not None]
        if sum(tests) != 1:
            raise ValueError("a condition needs exactly one of: equals, in, present, contains")
        return self


class DeviceIdSpec(_Strict):
    """Where the device's external id comes from: a topic variable, a payload path or a constant."""

    topic: str | None = None
    path: str | None = None
    const: str | None = None
    # A device behind a bridge (a Zigbee sensor behind Tasmota, a detector behind a transmission
    # device): the first of these payload paths that holds a value is appended as "<id>/<value>".
    sub_path: list[str] = Field(default_factory=list)

    _v = field_validator("path")(_check_path)
    _vs = field_validator("sub_path")(_check_paths)

    @model_validator(mode="after")
    def _one_source(self) -> DeviceIdSpec:
        if sum(x is not None for x in (self.topic, self.path, self.const)) != 1:
            raise ValueError("device_id needs exactly one of: topic, path, const")
        return self


class TimestampSpec(_Strict):
    path: str
    format: TimestampFormat = "auto"
    naive_tz: str = "Asia/Shanghai"  # zone for timestamps without offset (Tasmota sends local time)

    _v = field_validator("path")(_check_path)


class BinarySpec(_Strict):
    """Bytes to hand to a Python codec. ``path`` absent: the whole payload is the bytes. ``options``
    configure a family codec (``milesight``: the model ``variant`` and extra ``channels``)."""

    codec: str
    path: str | None = None
    encoding: Literal["base64", "hex", "raw"] = "base64"
    options: dict[str, Any] = Field(default_factory=dict)

    _v = field_validator("path")(_check_path)


class ReadingSpec(_Strict):
    metric: str
    path: str
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None  # unit the device sends; converted to the metric's canonical unit
    unit_path: str | None = None  # payload field naming the unit at run time (Tasmota TempUnit)
    unit_map: dict[str, str] = Field(default_factory=dict)  # payload unit value -> unit
    when: Condition | None = None
    unless: Condition | None = None
    # A probe of several on one device (Tasmota DS18B20-1..8): the reading belongs to
    # "<device id>/<value at sub_device_path>" (the probe's stable Id), else "<device id>/<sub_device>".
    sub_device: str | None = None
    sub_device_path: str | None = None

    _v = field_validator("path", "unit_path", "sub_device_path")(_check_path)

    @model_validator(mode="after")
    def _known(self) -> ReadingSpec:
        if self.metric not in METRIC_UNITS:
            raise ValueError(f"unknown metric {self.metric!r}; known: {', '.join(METRIC_UNITS)}")
        target = METRIC_UNITS[self.metric]
        for unit in [self.unit, *self.unit_map.values()]:
            if unit is not None and converter(unit, target) is None:
                raise ValueError(f"metric {self.metric}: no conversion from {unit!r} to {target!r}")
        if self.unit_map and self.unit_path is None:
            raise ValueError("unit_map needs unit_path")
        return self


class Quirk(_Strict):
    """A known fault of some devices of the model (one firmware), fixed on the decoded values in the
    metrics' units, before the plausibility check: ``swap`` exchanges two metrics' values, then each
    metric in ``scale`` / ``offset`` becomes ``value * scale + offset``. Applies when ``when`` holds."""

    when: Condition
    note: str = ""  # what is wrong and where it is known from
    swap: list[str] | None = None
    scale: dict[str, float] = Field(default_factory=dict)
    offset: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fix(self) -> Quirk:
        if self.swap is None and not self.scale and not self.offset:
            raise ValueError("a quirk needs swap, scale or offset")
        if self.swap is not None and (len(self.swap) != 2 or self.swap[0] == self.swap[1]):
            raise ValueError(f"quirk swap takes two different metrics, got {self.swap}")
        for metric in [*(self.swap or []), *self.scale, *self.offset]:
            if metric not in METRIC_UNITS:
                raise ValueError(f"quirk: unknown metric {metric!r}; known: {', '.join(METRIC_UNITS)}")
        for metric, factor in self.scale.items():
            if factor == 0:
                raise ValueError(f"quirk scale of {metric} is 0: that erases the value")
        return self

    @property
    def metrics(self) -> set[str]:
        return {*(self.swap or []), *self.scale, *self.offset}


class EventSpec(_Strict):
    """Maps a field to an event. Values in ``active``/``clear``, text containing one of
    ``active_contains``/``clear_contains``, or a numeric ``below``/``above`` threshold set the state; any
    other value (null, "", unknown codes) emits nothing. ``momentary`` events (presses) are active-only."""

    type: EventType
    path: str
    active: list[Any] = Field(default_factory=list)
    clear: list[Any] = Field(default_factory=list)
    active_contains: list[str] = Field(default_factory=list)
    clear_contains: list[str] = Field(default_factory=list)
    below: float | None = None
    above: float | None = None
    mask: int | None = Field(default=None, gt=0)  # active when (value & mask) != 0 (IAS ZoneStatus bits)
    momentary: bool = False
    when: Condition | None = None
    unless: Condition | None = None
    detail: dict[str, str] = Field(default_factory=dict)  # detail key -> payload path

    _v = field_validator("path")(_check_path)

    @field_validator("detail")
    @classmethod
    def _detail_paths(cls, v: dict[str, str]) -> dict[str, str]:
        for p in v.values():
            _check_path(p)
        return v

    @model_validator(mode="after")
    def _has_rule(self) -> EventSpec:
        listed = bool(self.active or self.clear or self.active_contains or self.clear_contains)
        threshold = self.below is not None or self.above is not None
        if listed + threshold + (self.mask is not None) != 1:
            raise ValueError(f"event {self.type}: give one of active/clear values (or *_contains), "
                             "below/above, or mask")
        if self.below is not None and self.above is not None:
            raise ValueError(f"event {self.type}: below and above are exclusive")
        return self


class DeviceProfile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    vendor: str = ""
    models: list[str] = Field(default_factory=list)
    kind: DeviceKind = "generic"
    transport: Literal["mqtt", "http"] = "mqtt"
    topic: str | None = None
    requires: list[str] = Field(default_factory=list)
    priority: int = 0
    auto_select: bool = True  # false: chosen only by the registry or --profile (a fridge probe looks like T/H)
    # A network-server family ("lorawan"): the device's frames arrive through any network server of that
    # family (device_profiles/network-servers/*.yaml), which supplies topic, device id, time and the bytes.
    network: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    format: Literal["json", "text", "binary"] = "json"
    text_fallback: bool = False  # json profile that also accepts a bare string payload ("online")
    binary: BinarySpec | None = None
    device_id: DeviceIdSpec
    timestamp: TimestampSpec | None = None
    heartbeat_interval_s: int | None = Field(default=None, gt=0)
    ignore: bool = False  # recognised traffic that carries nothing for us
    readings: list[ReadingSpec] = Field(default_factory=list)
    events: list[EventSpec] = Field(default_factory=list)
    quirks: list[Quirk] = Field(default_factory=list)

    _req = field_validator("requires")(_check_paths)

    @model_validator(mode="before")
    @classmethod
    def _network_device_id(cls, data: Any) -> Any:
        # A network profile's device id comes from its network server (bound at load time).
        if isinstance(data, dict) and data.get("network"):
            if "device_id" in data:
                raise ValueError("a network profile takes its device id from its network server")
            return {**data, "device_id": {"path": "network.dev_eui"}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        if self.network is not None:
            if self.topic or self.timestamp or self.format != "json" or self.transport != "mqtt":
                raise ValueError("a network profile takes topic, timestamp and format from its network server")
            if self.binary is None or self.binary.path is not None:
                raise ValueError("a network profile needs binary.codec (the bytes come from the network server)")
            if not (self.readings or self.events):
                raise ValueError("a profile needs readings or events")
            return self
        if self.transport == "mqtt" and not self.topic:
            raise ValueError("an mqtt profile needs a topic template")
        if self.topic:
            tpl = compile_template(self.topic)
            if self.device_id.topic is not None and self.device_id.topic not in tpl.variables:
                raise ValueError(f"device_id.topic {self.device_id.topic!r} is not a variable of {self.topic!r}")
        elif self.device_id.topic is not None:
            raise ValueError("device_id.topic needs a topic template")
        if self.format == "binary" and (self.binary is None or self.binary.path is not None):
            raise ValueError("format binary needs binary.codec and no binary.path")
        if self.binary is not None and self.format == "json" and self.binary.path is None:
            raise ValueError("a json profile with a binary codec needs binary.path")
        if not self.ignore and not (self.readings or self.events):
            raise ValueError("a profile needs readings or events (or ignore: true)")
        return self

    @model_validator(mode="after")
    def _quirks_fix_readings(self) -> DeviceProfile:
        read = {r.metric for r in self.readings}
        for i, quirk in enumerate(self.quirks):
            unread = sorted(quirk.metrics - read)
            if unread:
                raise ValueError(f"quirks[{i}] names {', '.join(unread)}, which no reading of this profile "
                                 f"yields (its readings: {', '.join(sorted(read)) or 'none'})")
        return self
