"""Codecs for NB-IoT frames that reach us inside CTWing / OceanConnect pushes.

The platforms wrap a device's own frame: CTWing transparent products put it base64-encoded in
``payload.APPdata``; OceanConnect products with a string service field put it in ``service.data.Data``.
Field layouts are those of the vendors' integration code named beside each codec (see the fixtures).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.codecs import CodecError, codec

_LETTER_FIELD = re.compile(r"([A-Z])([^A-Z]*)")


@codec("letter_fields")
def letter_fields(data: bytes) -> dict[str, Any]:
    """Key-letter/value text, e.g. Wanlin NB301 ``N311V31I865815040244829H8986…X10T28U99S18``:
    each capital letter names the field whose value follows it. Values stay text (``X`` = "01" and
    ``X`` = "1" are different codes on some firmware); profiles compare them as numbers or text."""
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise CodecError("letter frame is not ASCII text") from None
    if not text or not text[0].isupper():
        raise CodecError(f"letter frame must start with a field letter: {text[:20]!r}")
    fields: dict[str, Any] = {}
    for letter, value in _LETTER_FIELD.findall(text):
        if letter in fields:
            raise CodecError(f"field {letter!r} twice in letter frame")
        fields[letter] = value
    # Firmware generations differ in code width (X "02" low battery vs X "2" heat alarm): profiles tell
    # them apart by the frame's length.
    fields["frame_length"] = len(text)
    return fields


@codec("json_text")
def json_text(data: bytes) -> dict[str, Any]:
    """A JSON object carried as bytes (CTWing ``APPdata`` of user information transmission devices:
    ``{"b":[{"id":…,"v":"1"}],"c":27,"tm":…}``)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"embedded JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CodecError("embedded JSON is not an object")
    return doc


def _bcd_imei(raw: bytes) -> str:
    """Nibble-swapped BCD (68 80 30 … -> "860803…"), the last nibble padding."""
    digits = "".join(f"{b & 0x0F}{b >> 4}" for b in raw)
    return digits[:15]


@codec("huaqiang_nb_smoke")
def huaqiang_nb_smoke(data: bytes) -> dict[str, Any]:
    """Huaqiang (华强) W308 NB-IoT smoke detector "general data packet" (type 0x10, 27 data bytes).

    Layout (vendor protocol as implemented in the integration code cited in the fixtures): optional
    "PU" + u16 length prefix; header type, index, version, device (0x08 smoke), vendor, initiator,
    operator, u16 attributes (low 10 bits: data length 27), u32 time, 8-byte BCD IMEI; data: u16 cmd,
    alert bits (bit0 smoke, bit2 battery low, bit7 device fault), fault code (1: smoke self-test
    failed), mode (255: power-on), u16 battery centivolts, battery %, temperature + 100, u32 cell,
    RSRP (negated), u32 last smoke time, u32 last self-test time, self-test result (1 failed).
    ``fault`` combines alert bit7, fault code 1 and a failed self-test."""
    if data[:2] == b"PU":
        if len(data) < 4 or int.from_bytes(data[2:4], "big") != len(data) - 4:
            raise CodecError("Huaqiang frame: length prefix does not match")
        data = data[4:]
    if len(data) < 44:
        raise CodecError(f"Huaqiang frame: {len(data)} bytes, need 44")
    if data[0] != 0x10:
        raise CodecError(f"Huaqiang frame: packet type 0x{data[0]:02x} is not a general data packet")
    length = int.from_bytes(data[7:9], "big") & 0x03FF
    if length != 27:
        raise CodecError(f"Huaqiang frame: data length {length}, expected 27")
    alert, fault_code, self_test = data[23], data[24], data[43]
    return {
        "device_type": data[3],
        "imei": _bcd_imei(data[13:21]),
        "cmd": int.from_bytes(data[21:23], "big"),
        "alert": alert,
        "fault_code": fault_code,
        "mode": data[25],
        "battery_voltage": int.from_bytes(data[26:28], "big") / 100,
        "battery": data[28],
        "temperature": data[29] - 100,
        "rsrp": -data[34],
        "self_test_result": self_test,
        # One sensor-fault state from the three places the frame reports it, so a fault cannot be
        # raised and cleared by the same message.
        "fault": int(bool(alert & 0x80) or fault_code == 1 or self_test == 1),
    }
