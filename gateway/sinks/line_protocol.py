"""InfluxDB line protocol for readings: ``<metric>,device_id=<id>[,institution_id=<id>] value=<float> <ns>``.

Escaping follows the InfluxDB 1.x line-protocol reference and what influxd 1.x actually parses (checked
against 1.6.7 in tests/test_line_protocol.py):

* measurement: ``,`` and space are escaped with a backslash;
* tag keys and values: ``,``, ``=`` and space are escaped with a backslash;
* backslashes are written as they are. 1.x un-escapes only ``\\,``, ``\\=`` and ``\\ `` in tags, so a
  doubled backslash would be stored doubled; a backslash in front of an escaped character still
  round-trips (``a\\,b`` is written ``a\\\\,b`` and read back as ``a\\,b``).
  The one thing 1.x cannot represent is a backslash at the *end* of a tag value or measurement: it
  would escape the separator after it and break the whole line (even doubled). It is replaced by ``/``.
* newlines: line protocol has no escape for them (1.x keeps ``\\<newline>`` as two characters), and a
  raw newline ends the line, so a newline or carriage return in a name (devices named by hand) is
  written as an escaped space: the point keeps a readable name and cannot break the batch.
* an empty tag value is invalid line protocol, so an empty/None ``device_id`` or ``institution_id``
  omits the tag.

Tags are written sorted by key (``device_id`` < ``institution_id``), InfluxDB's recommended order. The
field is always a float (``value=97.0``, never ``97i`` or ``True``) so a measurement never gets a
field-type conflict; NaN and ±inf, which InfluxDB cannot store and which would fail the whole line,
are left out with a warning (the decoder already drops them, so this is a last guard).

An implausible reading (``Reading.quality``, outside its metric's range) is written to the measurement
``implausible`` with the metric as a third tag (``implausible,device_id=..,institution_id=..,metric=co2
value=120.0 <ns>``): kept for engineers, never in the metric's own measurement, which thresholds and
dashboards read.

Measurement names are the canonical metric identifiers (anxin.model.METRIC_UNITS), so the line-protocol
quirk of a line starting with ``#`` (a comment) cannot arise from them.

Hot path: escaped tag strings are cached per (device_id, institution_id) and measurements per metric;
per reading there are two dict look-ups and one f-string, no regex.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from anxin.model import Quality, Reading

log = logging.getLogger(__name__)

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\ ", "\r": "\\ "})
_TAG = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\ ", "\r": "\\ "})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CACHE_LIMIT = 100_000  # distinct (device, institution) pairs; far above any one gateway's fleet

IMPLAUSIBLE_MEASUREMENT = "implausible"
_GOOD = Quality.GOOD

_tag_cache: dict[tuple[str, str | None], str] = {}
_measurement_cache: dict[str, str] = {}


def _no_trailing_backslash(value: str) -> str:
    return value.rstrip("\\") + "/" if value.endswith("\\") else value


def escape_tag(value: str) -> str:
    """A tag key or value, escaped for line protocol (see the module docstring)."""
    return _no_trailing_backslash(value).translate(_TAG)


def escape_measurement(name: str) -> str:
    return _no_trailing_backslash(name).translate(_MEASUREMENT)


def tag_set(device_id: str, institution_id: str | None) -> str:
    """``,device_id=..[,institution_id=..]``, sorted by key, empty tags left out; cached."""
    key = (device_id, institution_id)
    hit = _tag_cache.get(key)
    if hit is None:
        hit = ""
        if device_id:
            hit += ",device_id=" + escape_tag(device_id)
        if institution_id:
            hit += ",institution_id=" + escape_tag(institution_id)
        if len(_tag_cache) >= _CACHE_LIMIT:
            _tag_cache.clear()
        _tag_cache[key] = hit
    return hit


def _measurement(metric: str) -> str:
    hit = _measurement_cache.get(metric)
    if hit is None:
        if len(_measurement_cache) >= _CACHE_LIMIT:
            _measurement_cache.clear()
        hit = _measurement_cache[metric] = escape_measurement(metric)
    return hit


def timestamp_ns(ts: datetime) -> int:
    """Exact integer nanoseconds since the epoch (no float rounding) of an aware datetime."""
    td = ts - _EPOCH
    return ((td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds) * 1000


def encode(readings: Sequence[Reading]) -> bytes:
    """The readings as one line-protocol body (UTF-8, one line per reading, each ending in a newline)."""
    lines: list[str] = []
    append = lines.append
    tags_get = _tag_cache.get
    meas_get = _measurement_cache.get
    last_ts: datetime | None = None
    suffix = ""
    skipped = 0
    for r in readings:
        ts = r.ts
        if ts is not last_ts:  # the readings of one message share their timestamp object
            td = ts - _EPOCH
            suffix = f" {((td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds) * 1000}\n"
            last_ts = ts
        value = r.value
        if value.__class__ is not float:  # an int or bool would be written as an int/boolean field
            value = float(value)
        if value - value != 0.0:  # NaN or ±inf
            skipped += 1
            continue
        meas = meas_get(r.metric)
        if meas is None:
            meas = _measurement(r.metric)
        tags = tags_get((r.device_id, r.institution_id))
        if tags is None:
            tags = tag_set(r.device_id, r.institution_id)
        if r.quality is not _GOOD:  # kept apart, the metric a tag (sorted last: "metric" > "institution_id")
            meas = IMPLAUSIBLE_MEASUREMENT
            tags = f"{tags},metric={escape_tag(r.metric)}"
        append(f"{meas}{tags} value={value!r}{suffix}")
    if skipped:
        log.warning("left out %d non-finite readings: InfluxDB cannot store NaN or infinity", skipped)
    return "".join(lines).encode()
