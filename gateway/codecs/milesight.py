"""Milesight LoRaWAN: one decoder for the whole family, driven by a channel table.

Uplinks are TLV runs: channel id, channel type, then a value whose size and meaning the pair fixes. The
family table (``milesight_family.yaml``, built from the vendor's public decoders) has the pairs every
model shares plus per-model *variants* for the pairs whose meaning differs between series. A profile
names its variant (``binary: {codec: milesight, options: {variant: ws301}}``) and may add or override
pairs (``options.channels``) in the same format, so a new model needs only a YAML file. A pair the table
does not know is an error naming the byte offset (the frame is dead-lettered), never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from gateway.codecs import Codec, CodecConfigError, CodecError, codec, codec_factory

FAMILY_FILE = Path(__file__).with_name("milesight_family.yaml")
UNKNOWN = "unknown"  # an enum code the table does not name (the vendor decoders say the same)

_INT_FORMATS: dict[str, tuple[int, bool]] = {
    "u8": (1, False), "i8": (1, True), "u16": (2, False), "i16": (2, True), "u32": (4, False), "i32": (4, True),
}


@dataclass(frozen=True, slots=True)
class BitField:
    name: str
    shift: int
    width: int
    enum: Mapping[int, str] | None


@dataclass(frozen=True, slots=True)
class Part:
    """One value inside a channel: an integer (scaled, enumerated or a sentinel), hex bytes, or skipped."""

    name: str | None
    kind: str  # an _INT_FORMATS key, "hex" or "skip"
    size: int
    div: float | None = None
    enum: Mapping[int, str] | None = None
    sentinels: Mapping[int, str] | None = None
    bits: tuple[BitField, ...] = ()


@dataclass(frozen=True, slots=True)
class Channel:
    parts: tuple[Part, ...] = ()
    into: str | None = None  # append the parts as one record to this list (history)
    special: str | None = None  # a record whose layout is not a fixed list of parts
    size: int = field(init=False)

    def __post_init__(self) -> None:
        size = SPECIAL_SIZES[self.special] if self.special else sum(p.size for p in self.parts)
        object.__setattr__(self, "size", size)


Table = dict[tuple[int, int], Channel]


# -- table parsing (the YAML format documented at the top of milesight_family.yaml) ----------------------
_PAIR = re.compile(r"^(?:0x)?([0-9a-f]{2})[\s:]*(?:0x)?([0-9a-f]{2})$", re.I)


def parse_pair(key: Any) -> tuple[int, int]:
    m = _PAIR.match(str(key).strip())
    if m is None:
        raise CodecConfigError(f"channel key {key!r} is not 'ID TYPE' in hex (e.g. \"03 67\")")
    return int(m.group(1), 16), int(m.group(2), 16)


def _enum(raw: Any, where: str) -> Mapping[int, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(isinstance(k, int) for k in raw):
        raise CodecConfigError(f"{where}: enum/sentinels is a mapping of integer codes to words")
    return {int(k): str(v) for k, v in raw.items()}


def _part(raw: Any, where: str) -> Part:
    if not isinstance(raw, dict):
        raise CodecConfigError(f"{where}: a field is a mapping")
    known = {"name", "type", "div", "enum", "sentinels", "bits", "skip"}
    if extra := set(raw) - known:
        raise CodecConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    if "skip" in raw:
        return Part(None, "skip", int(raw["skip"]))
    kind = str(raw.get("type", ""))
    name = raw.get("name")
    if kind.startswith("hex:"):
        size, kind = int(kind[4:]), "hex"
    elif kind in _INT_FORMATS:
        size = _INT_FORMATS[kind][0]
    else:
        raise CodecConfigError(f"{where}: type {kind!r} is not one of {', '.join(_INT_FORMATS)}, hex:N")
    bits: tuple[BitField, ...] = ()
    if "bits" in raw:
        bits = tuple(
            BitField(str(b["name"]), int(b["shift"]), int(b["width"]), _enum(b.get("enum"), where))
            for b in raw["bits"]
        )
    elif not isinstance(name, str) or not name:
        raise CodecConfigError(f"{where}: a field needs a name (or bits)")
    div = raw.get("div")
    if div is not None and (not isinstance(div, int | float) or div == 0):
        raise CodecConfigError(f"{where}: div must be a non-zero number")
    return Part(name if isinstance(name, str) else None, kind, size, float(div) if div else None,
                _enum(raw.get("enum"), where), _enum(raw.get("sentinels"), where), bits)


def parse_channel(raw: Any, where: str) -> Channel:
    if not isinstance(raw, dict):
        raise CodecConfigError(f"{where}: a channel is a mapping")
    if "special" in raw:
        special = str(raw["special"])
        if special not in SPECIALS:
            raise CodecConfigError(f"{where}: unknown special record {special!r}; known: {', '.join(SPECIALS)}")
        return Channel(special=special)
    if "parts" in raw:
        into = raw.get("into")
        if extra := set(raw) - {"parts", "into"}:
            raise CodecConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        parts = tuple(_part(p, f"{where} part {i}") for i, p in enumerate(raw["parts"]))
        if not parts:
            raise CodecConfigError(f"{where}: parts is empty")
        return Channel(parts, str(into) if into else None)
    return Channel((_part(raw, where),))


def parse_table(raw: Any, where: str) -> Table:
    if not isinstance(raw, dict):
        raise CodecConfigError(f"{where}: channels is a mapping of 'ID TYPE' to fields")
    return {parse_pair(k): parse_channel(v, f"{where} {k}") for k, v in raw.items() if not str(k).startswith("_")}


@dataclass(frozen=True, slots=True)
class Family:
    common: Table
    variants: dict[str, Table]
    frames: dict[str, str]  # variant -> special whole-frame decoder (not TLV)


@cache
def family() -> Family:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 10x faster start-up when present
    raw = yaml.load(FAMILY_FILE.read_text(encoding="utf-8"), Loader=loader)
    common = parse_table(raw["common"], "common")
    variants: dict[str, Table] = {}
    frames: dict[str, str] = {}
    for name, body in raw["variants"].items():
        if isinstance(body, dict) and set(body) == {"special"}:
            frames[name] = str(body["special"])
            variants[name] = {}
        else:
            variants[name] = parse_table(body, f"variant {name}")
    return Family(common, variants, frames)


# -- decoding ---------------------------------------------------------------------------------------------
def _put(out: dict[str, Any], dotted: str, value: Any) -> None:
    head, _, rest = dotted.partition(".")
    if rest:
        _put(out.setdefault(head, {}), rest, value)
    else:
        out[head] = value


def _read_part(part: Part, raw: bytes, rec: dict[str, Any]) -> None:
    if part.kind == "skip":
        return
    if part.kind == "hex":
        assert part.name is not None
        _put(rec, part.name, raw.hex())
        return
    value = int.from_bytes(raw, "little", signed=_INT_FORMATS[part.kind][1])
    for b in part.bits:
        code = (value >> b.shift) & ((1 << b.width) - 1)
        _put(rec, b.name, b.enum.get(code, UNKNOWN) if b.enum is not None else code)
    if part.name is None:
        return
    if part.sentinels is not None:
        if value in part.sentinels:  # "sensor error / warming up": a status, never a number
            _put(rec, f"{part.name}_sensor_status", part.sentinels[value])
            return
        _put(rec, f"{part.name}_sensor_status", "normal")
    if part.enum is not None:
        _put(rec, part.name, part.enum.get(value, UNKNOWN))
    elif part.div is not None:
        _put(rec, part.name, value / part.div)
    else:
        _put(rec, part.name, value)


def walk_tlv(data: bytes, table: Mapping[tuple[int, int], Channel], model: str) -> dict[str, Any]:
    if not data:
        raise CodecError(f"{model}: empty frame")
    out: dict[str, Any] = {}
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise CodecError(f"{model}: truncated frame at byte {i}")
        key = (data[i], data[i + 1])
        ch = table.get(key)
        if ch is None:
            raise CodecError(f"{model}: unknown channel 0x{key[0]:02x} type 0x{key[1]:02x} at byte {i}")
        size = ch.size
        value = data[i + 2:i + 2 + size]
        if len(value) < size:
            single = ch.parts[0].name if len(ch.parts) == 1 else None
            what = single or f"channel 0x{key[0]:02x} 0x{key[1]:02x}"
            raise CodecError(f"{model}: truncated {what} at byte {i} (needs {size} bytes)")
        rec: dict[str, Any] = {} if (ch.into or ch.special) else out
        into: str | None = ch.into
        if ch.special:
            rec, into = SPECIALS[ch.special](value)
        else:
            offset = 0
            for part in ch.parts:
                _read_part(part, value[offset:offset + part.size], rec)
                offset += part.size
        if into:
            out.setdefault(into, []).append(rec)
        i += 2 + size
    return out


def _i16(b: bytes) -> int:
    return int.from_bytes(b, "little", signed=True)


_TS_ALARM = {0: "threshold alarm release", 1: "threshold alarm", 2: "mutation alarm"}
_MAGNET = {0: "close", 1: "open"}


def _ts302_history(value: bytes) -> tuple[dict[str, Any], str]:
    """timestamp, a mask byte (probe 1 high nibble, probe 2 low nibble: 1 threshold alarm, 2 release,
    3 mutation alarm, 4 periodic temperature, 5 magnet alarm, 6 periodic magnet), two 2-byte values."""
    rec: dict[str, Any] = {"timestamp": int.from_bytes(value[0:4], "little")}
    for n, mask, raw in ((1, value[4] >> 4, value[5:7]), (2, value[4] & 0x0F, value[7:9])):
        if mask in (1, 2, 3, 4):
            rec[f"temperature_chn{n}"] = _i16(raw) / 10
            if mask != 4:
                rec[f"temperature_chn{n}_alarm"] = _TS_ALARM[{1: 1, 2: 0, 3: 2}[mask]]
        elif mask in (5, 6):
            rec[f"magnet_chn{n}"] = _MAGNET.get(int.from_bytes(raw, "little"), UNKNOWN)
            if mask == 5:
                rec[f"magnet_chn{n}_alarm"] = "threshold alarm"
    return rec, "history"


_TS201_EVENTS = {1: "periodic", 2: "temperature alarm (threshold or mutation)", 3: "temperature alarm release",
                 4: "humidity alarm (threshold or mutation)", 5: "humidity alarm release", 6: "immediate"}
_TS201_SENSORS = {1: "DS18B20", 2: "SHT4X"}
_TS201_STATUS = {0: "normal", 1: "read error", 2: "out of range"}


def _ts201_history(value: bytes) -> tuple[dict[str, Any], str]:
    """timestamp, probe type, temperature, humidity, event byte (low nibble event type, bits 4-5 humidity
    status, bits 6-7 temperature status). A DS18B20 probe has no humidity: its byte is not a reading."""
    sensor, flags = value[4], value[8]
    event: dict[str, Any] = {"event_type": _TS201_EVENTS.get(flags & 0x0F, UNKNOWN)}
    rec: dict[str, Any] = {"timestamp": int.from_bytes(value[0:4], "little"),
                           "sensor_type": _TS201_SENSORS.get(sensor, UNKNOWN), "event": event,
                           "temperature": _i16(value[5:7]) / 10}
    if sensor == 2:
        rec["humidity"] = value[7] / 2
        event["humidity_sensor_status"] = _TS201_STATUS.get((flags >> 4) & 0x03, UNKNOWN)
    event["temperature_sensor_status"] = _TS201_STATUS.get((flags >> 6) & 0x03, UNKNOWN)
    return rec, "history"


SPECIALS: dict[str, Callable[[bytes], tuple[dict[str, Any], str]]] = {
    "ts302_history": _ts302_history, "ts201_history": _ts201_history,
}
SPECIAL_SIZES: dict[str, int] = {"ts302_history": 9, "ts201_history": 9}


_GS524N_EVENTS = {
    0x01: "alarm", 0x02: "silent", 0x04: "low battery", 0x05: "failover", 0x07: "normal", 0x0A: "removed",
    0x0B: "installed", 0x0E: "testing alarm with normal battery", 0x0F: "testing alarm with low battery",
}


def gs524n_frame(data: bytes) -> dict[str, Any]:
    """GS524N smoke detector fixed frame: version/protocol, sensor type/message type, battery,
    concentration, temperature, checksum (all six bytes sum to 0 mod 256; the vendor decoder does not
    check it, we do)."""
    if len(data) != 6:
        raise CodecError(f"GS524N: frame is {len(data)} bytes, expected 6")
    if sum(data) % 256 != 0:
        raise CodecError(f"GS524N: checksum mismatch (byte sum 0x{sum(data) % 256:02x}, expected 0x00)")
    message = data[1] & 0x0F
    if message not in _GS524N_EVENTS:
        raise CodecError(f"GS524N: unknown message type {message}")
    return {
        "version": data[0] >> 4,
        "protocol": data[0] & 0x0F,
        "type": "smoke sensor" if data[1] >> 4 == 1 else UNKNOWN,
        "event": _GS524N_EVENTS[message],
        "battery": data[2],
        "concentration": data[3],
        "temperature": _i16(data[4:5]),
    }


FRAMES: dict[str, Codec] = {"gs524n_frame": gs524n_frame}


def build(variant: str | None = None, channels: Mapping[str, Any] | None = None) -> Codec:
    """The family decoder for one model: common pairs + the variant's + the profile's own."""
    fam = family()
    if variant is not None and variant not in fam.variants:
        raise CodecConfigError(f"unknown Milesight variant {variant!r}; known: {', '.join(sorted(fam.variants))}")
    if variant is not None and variant in fam.frames:
        if channels:
            raise CodecConfigError(f"variant {variant} is a fixed frame and takes no channels")
        return FRAMES[fam.frames[variant]]
    table: Table = {**fam.common, **(fam.variants[variant] if variant else {})}
    if channels:
        table.update(parse_table(dict(channels), "channels"))
    model = (variant or "milesight").upper()

    def decode(data: bytes) -> dict[str, Any]:
        return walk_tlv(data, table, model)

    return decode


@codec_factory("milesight")
def milesight(options: Mapping[str, Any]) -> Codec:
    if extra := set(options) - {"variant", "channels"}:
        raise CodecConfigError(f"milesight codec options are variant and channels, not {', '.join(sorted(extra))}")
    variant = options.get("variant")
    channels = options.get("channels")
    if channels is not None and not isinstance(channels, dict):
        raise CodecConfigError("milesight channels is a mapping of 'ID TYPE' to fields")
    return build(str(variant) if variant is not None else None, channels)


# Codec names used before the family decoder existed (kept so older profiles keep loading).
for _old, _variant in [("milesight_ws101", "ws101"), ("milesight_ws303", "ws303"), ("milesight_gs101", "gs101"),
                       ("milesight_em300_th", "em300-th"), ("milesight_am319", "am319"),
                       ("milesight_am307", "am307"), ("milesight_gs524n", "gs524n")]:
    codec(_old)(build(_variant))
