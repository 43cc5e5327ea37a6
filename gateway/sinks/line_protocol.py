"""InfluxDB line protocol for readings: ``<metric>,device_id=..,institution_id=.. value=<float> <ns>``.

Escaping follows the InfluxDB 1.x line-protocol reference: measurement names escape commas and spaces;
tag keys and values escape commas, equals signs and spaces. Line protocol has no escape for newlines,
so a newline in a tag value (a device named by hand) becomes a space rather than a broken line.
Tags are written sorted by key, as InfluxDB recommends. Escaped tag strings are cached per device.
"""

from __future__ import annotations

from collections.abc import Sequence

from anxin.model import Reading

_MEAS = str.maketrans({",": "\\,", " ": "\\ ", "\n": " ", "\r": " "})
_TAG = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\ ", "\r": "\\ "})

_tag_cache: dict[tuple[str, str | None], str] = {}
_meas_cache: dict[str, str] = {}


def escape_tag(value: str) -> str:
    # InfluxDB 1.x cannot parse a tag value that ends in a backslash (it escapes the separator after
    # it, and a doubled backslash is no escape there), so a trailing backslash becomes "/".
    if value.endswith("\\"):
        value = value.rstrip("\\") + "/"
    return value.translate(_TAG)


def escape_measurement(name: str) -> str:
    return name.translate(_MEAS)


def _tags(device_id: str, institution_id: str | None) -> str:
    key = (device_id, institution_id)
    hit = _tag_cache.get(key)
    if hit is None:
        hit = ",device_id=" + escape_tag(device_id)
        if institution_id:
            hit += ",institution_id=" + escape_tag(institution_id)
        if len(_tag_cache) > 200_000:
            _tag_cache.clear()
        _tag_cache[key] = hit
    return hit


def _measurement(metric: str) -> str:
    hit = _meas_cache.get(metric)
    if hit is None:
        hit = _meas_cache[metric] = escape_measurement(metric)
    return hit


def encode(readings: Sequence[Reading]) -> bytes:
    lines: list[str] = []
    append = lines.append
    last_ts, ts_ns = None, 0
    for r in readings:
        if r.ts is not last_ts:  # the readings of one message share their timestamp object
            last_ts, ts_ns = r.ts, round(r.ts.timestamp() * 1_000_000) * 1000  # datetimes carry microseconds
        append(f"{_measurement(r.metric)}{_tags(r.device_id, r.institution_id)} value={r.value!r} {ts_ns}")
    return ("\n".join(lines) + "\n").encode()
