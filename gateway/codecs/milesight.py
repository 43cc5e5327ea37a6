"""Milesight LoRaWAN payload codecs, ported from the vendor's decoders (Milesight-IoT/SensorDecoders).

Most models send TLV frames: channel id, channel type, then a value whose length and meaning the pair
fixes *per model* (the same pair can mean different things on two models), so each model has its own
table and only the walking code is shared. Field names follow the vendor decoders. Unknown pairs are an
error, not a silent stop: the frame is dead-lettered with the reason. The GS524N smoke detector sends a
fixed 6-byte frame with a checksum instead.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from gateway.codecs import CodecError, codec

Reader = Callable[[bytes], Any]
# (channel id, channel type) -> (field name, value length, reader)
Table = dict[tuple[int, int], tuple[str, int, Reader]]


def _u8(b: bytes) -> int:
    return b[0]


def _i8(b: bytes) -> int:
    return int(struct.unpack("<b", b)[0])


def _u16(b: bytes) -> int:
    return int(struct.unpack("<H", b)[0])


def _u32(b: bytes) -> int:
    return int(struct.unpack("<I", b)[0])


def _tenths_i16(b: bytes) -> float:
    return int(struct.unpack("<h", b)[0]) / 10


def _halves_u8(b: bytes) -> float:
    return b[0] / 2


def _hundredths_u16(b: bytes) -> float:
    return _u16(b) / 100


def _tenths_u16(b: bytes) -> float:
    return _u16(b) / 10


def _enum(names: dict[int, str]) -> Reader:
    def read(b: bytes) -> str:
        return names.get(b[0], "unknown")

    return read


def _hex(b: bytes) -> str:
    return b.hex()


# Device-information channels every model may send (at join, on request): read and kept, not used.
_DEVICE_INFO: Table = {
    (0xFF, 0x01): ("ipso_version", 1, _hex),
    (0xFF, 0x09): ("hardware_version", 2, _hex),
    (0xFF, 0x0A): ("firmware_version", 2, _hex),
    (0xFF, 0xFF): ("tsl_version", 2, _hex),
    (0xFF, 0x16): ("sn", 8, _hex),
    (0xFF, 0x08): ("sn", 6, _hex),
    (0xFF, 0x0F): ("lorawan_class", 1, _u8),
    (0xFF, 0xFE): ("reset_event", 1, _u8),
    (0xFF, 0x0B): ("device_status", 1, _u8),
}
_BATTERY: Table = {(0x01, 0x75): ("battery", 1, _u8)}
_TEMP_HUM: Table = {
    (0x03, 0x67): ("temperature", 2, _tenths_i16),
    (0x04, 0x68): ("humidity", 1, _halves_u8),
}


def walk_tlv(data: bytes, table: Table, model: str) -> dict[str, Any]:
    if not data:
        raise CodecError(f"{model}: empty frame")
    out: dict[str, Any] = {}
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise CodecError(f"{model}: truncated frame at byte {i}")
        key = (data[i], data[i + 1])
        spec = table.get(key) or _DEVICE_INFO.get(key)
        if spec is None:
            raise CodecError(f"{model}: unknown channel 0x{key[0]:02x} type 0x{key[1]:02x} at byte {i}")
        name, size, read = spec
        value = data[i + 2:i + 2 + size]
        if len(value) < size:
            raise CodecError(f"{model}: truncated {name} at byte {i} (needs {size} bytes)")
        _put(out, name, read(value))
        i += 2 + size
    return out


def _put(out: dict[str, Any], dotted: str, value: Any) -> None:
    head, _, rest = dotted.partition(".")
    if rest:
        _put(out.setdefault(head, {}), rest, value)
    else:
        out[head] = value


_WS101: Table = {
    **_BATTERY,
    (0xFF, 0x2E): ("button_event.status", 1, _enum({1: "short press", 2: "long press", 3: "double press"})),
}
_WS303: Table = {
    **_BATTERY,
    (0x03, 0x00): ("leakage_status", 1, _enum({0: "normal", 1: "leak"})),
}
_GS101: Table = {
    (0x05, 0x8E): ("gas_status", 1, _enum({0: "normal", 1: "alarm"})),
    (0x06, 0x01): ("valve_status", 1, _enum({0: "off", 1: "on"})),
    (0x07, 0x01): ("relay_output_status", 1, _enum({0: "off", 1: "on"})),
    (0x08, 0x90): ("life_remain", 4, _u32),
    (0xFF, 0x3F): ("alarm", 1, _enum({0: "power off", 1: "power on", 2: "device fault",
                                      3: "device fault recovered", 4: "device will be invalid soon",
                                      5: "device invalid"})),
}
_EM300_TH: Table = {**_BATTERY, **_TEMP_HUM}
# AM300 family. On these models 0x08 0x7D is the TVOC *IAQ level* (value/100); 0x08 0xE6 is TVOC in µg/m³.
_AM_COMMON: Table = {
    **_BATTERY,
    **_TEMP_HUM,
    (0x05, 0x00): ("pir", 1, _enum({0: "idle", 1: "trigger"})),
    (0x06, 0xCB): ("light_level", 1, _u8),
    (0x07, 0x7D): ("co2", 2, _u16),
    (0x08, 0x7D): ("tvoc", 2, _hundredths_u16),
    (0x08, 0xE6): ("tvoc_ugm3", 2, _u16),
    (0x09, 0x73): ("pressure", 2, _tenths_u16),
    (0x0E, 0x01): ("buzzer_status", 1, _enum({0: "off", 1: "on"})),
}
_AM319: Table = {
    **_AM_COMMON,
    (0x0A, 0x7D): ("hcho", 2, _hundredths_u16),
    (0x0B, 0x7D): ("pm2_5", 2, _u16),
    (0x0C, 0x7D): ("pm10", 2, _u16),
    (0x0D, 0x7D): ("o3", 2, _hundredths_u16),
}
_AM307: Table = dict(_AM_COMMON)


def _register_tlv(name: str, model: str, table: Table) -> None:
    def decode(data: bytes) -> dict[str, Any]:
        return walk_tlv(data, table, model)

    codec(name)(decode)


for _name, _model, _table in [
    ("milesight_ws101", "WS101", _WS101), ("milesight_ws303", "WS303", _WS303), ("milesight_gs101", "GS101", _GS101),
    ("milesight_em300_th", "EM300-TH", _EM300_TH), ("milesight_am319", "AM319", _AM319),
    ("milesight_am307", "AM307", _AM307),
]:
    _register_tlv(_name, _model, _table)


_GS524N_EVENTS = {
    0x01: "alarm", 0x02: "silent", 0x04: "low battery", 0x05: "failover", 0x07: "normal", 0x0A: "removed",
    0x0B: "installed", 0x0E: "testing alarm with normal battery", 0x0F: "testing alarm with low battery",
}


@codec("milesight_gs524n")
def gs524n(data: bytes) -> dict[str, Any]:
    """Fixed frame: version/protocol, sensor type/message type, battery, concentration, temperature,
    checksum (all six bytes sum to 0 mod 256; the vendor decoder does not check it, we do)."""
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
        "type": "smoke sensor" if data[1] >> 4 == 1 else "unknown",
        "event": _GS524N_EVENTS[message],
        "battery": data[2],
        "concentration": data[3],
        "temperature": _i8(data[4:5]),
    }
