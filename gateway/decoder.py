"""Applies one device profile to one message: payload bytes -> canonical readings and events.

Profiles are compiled once (paths parsed, converters chosen) so the per-message work is plain lookups.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from anxin.model import METRIC_UNITS, METRICS, Event, EventState, EventType, Quality, Reading
from gateway.codecs import CodecError, get_codec
from gateway.paths import MISSING, Segment, parse_path, resolve
from gateway.profile_schema import Condition, DeviceProfile, EventSpec, Quirk, ReadingSpec
from gateway.timestamps import parse_timestamp, trusted
from gateway.topics import TopicTemplate, compile_template
from gateway.values import Converter, canonical_unit_name, converter, normalize, to_number
from gateway.values import identity as _identity


class DecodeError(ValueError):
    """The payload does not fit the profile (malformed JSON, bad bytes, no device id)."""


@dataclass(slots=True)
class Decoded:
    profile: str
    device_id: str
    readings: list[Reading] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # Why parts of the message were unusable; each problem is also a fault.sensor event in ``events``.
    problems: list[str] = field(default_factory=list)
    # Readings outside their metric's range, flagged Quality.IMPLAUSIBLE: stored apart, never as readings.
    implausible: list[Reading] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """The message produced something besides the fault events its problems raised."""
        return bool(self.readings) or len(self.events) > len(self.problems)


_NEVER_SEEN: set[tuple[str, str]] = set()  # decode's "seen" when first_wins is off: never read or written

# A rule's verdict on the value at its path when it produced nothing: not applicable (its condition does
# not hold, or the field is absent, null or ""), ACCEPTED (e.g. an idle button), or why the value is unusable.
ACCEPTED = ""


def _sub_id(raw: Any) -> str:
    """A sub-device's id as found in a payload (a probe's Id, a Zigbee name behind a bridge), or ""."""
    if isinstance(raw, str | int) and not isinstance(raw, bool):
        return str(raw).strip()
    return ""


def _quiet(raw: Any) -> bool:
    """Absent, null or empty: devices send these for "nothing to report"."""
    return raw is MISSING or raw is None or (isinstance(raw, str) and not raw.strip())


def _shown(raw: Any) -> Any:
    """A payload value small enough for an event's detail."""
    if isinstance(raw, bool | int | float) or raw is None:
        return raw if not isinstance(raw, float) or math.isfinite(raw) else repr(raw)
    text = raw if isinstance(raw, str) else orjson.dumps(raw, default=repr).decode()
    return text if len(text) <= 200 else text[:200] + "…"


def _kind_of(doc: Any) -> str:
    return {list: "a JSON array", str: "a bare string", bool: "a bare boolean", type(None): "null"}.get(
        type(doc), "a bare number" if isinstance(doc, int | float) else type(doc).__name__)


def _path(text: str) -> tuple[Segment, ...]:
    return () if text == "$" else parse_path(text)


def _top_key(path: tuple[Segment, ...]) -> str | None:
    """The key of a path that is one plain top-level key (most are): read with one dict lookup."""
    return path[0] if len(path) == 1 and type(path[0]) is str and path[0] != "*" else None


def _at(doc: Any, key: str | None, path: tuple[Segment, ...]) -> Any:
    """``resolve(doc, path)``, with the top-level-key case done without the general loop."""
    if key is None:
        return resolve(doc, path)
    return doc.get(key, MISSING) if type(doc) is dict else MISSING


class _Cond:
    __slots__ = ("contains", "equals", "path", "present")

    def __init__(self, c: Condition) -> None:
        self.path = _path(c.path)
        self.present = c.present
        self.contains = [t.casefold() for t in c.contains] if c.contains is not None else None
        values = [c.equals] if c.in_ is None else c.in_
        self.equals = {_hashable(normalize(v)) for v in values}

    def holds(self, doc: Any) -> bool:
        v = resolve(doc, self.path)
        if self.present is not None:
            return (v is not MISSING and v is not None) == self.present
        if v is MISSING:
            return False
        if self.contains is not None:
            return _contains(v, self.contains)
        return _hashable(normalize(v)) in self.equals


def _contains(value: Any, needles: list[str]) -> bool:
    """Text containing any of the (case-folded) needles."""
    return isinstance(value, str) and any(n in value.casefold() for n in needles)


def _hashable(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool | None) else repr(v)


class _ReadingRule:
    __slots__ = ("convert", "field", "high", "key", "low", "metric", "offset", "own_device", "path", "plain", "range",
                 "scale", "shared", "sub_device", "sub_device_path", "unit_map", "unit_path", "unless", "when")

    def __init__(self, spec: ReadingSpec) -> None:
        target = METRIC_UNITS[spec.metric]
        self.metric = spec.metric
        self.range = METRICS[spec.metric]
        self.low, self.high = self.range.low, self.range.high
        self.shared = False  # another rule reads the same field (set by CompiledProfile)
        self.field = spec.path
        self.sub_device = spec.sub_device
        self.sub_device_path = _path(spec.sub_device_path) if spec.sub_device_path else None
        self.own_device = not (self.sub_device or self.sub_device_path)  # the reading is the message's device's
        self.path = _path(spec.path)
        self.key = _top_key(self.path)
        self.scale, self.offset = spec.scale, spec.offset
        self.convert: Converter | None = converter(spec.unit or target, target)
        self.unit_path = _path(spec.unit_path) if spec.unit_path else None
        self.unit_map: dict[str, Converter | None] = {
            k: converter(canonical_unit_name(u), target) for k, u in spec.unit_map.items()
        }
        self.when = _Cond(spec.when) if spec.when else None
        self.unless = _Cond(spec.unless) if spec.unless else None
        # Most readings are a plain number at a path: skip the general machinery for them.
        self.plain = (self.when is None and self.unless is None and self.unit_path is None
                      and self.convert is _identity and self.scale == 1.0 and self.offset == 0.0)

    def device(self, doc: Any, device_id: str) -> str:
        """The device the reading belongs to: the message's, or one probe of several on it."""
        if self.sub_device_path is not None:
            sub = _sub_id(resolve(doc, self.sub_device_path))
            if sub:
                return f"{device_id}/{sub}"
        return f"{device_id}/{self.sub_device}" if self.sub_device else device_id

    def applies(self, doc: Any) -> bool:
        return not ((self.when and not self.when.holds(doc)) or (self.unless and self.unless.holds(doc)))

    def verdict(self, doc: Any) -> str | None:
        """Called when ``value`` gave nothing: see ACCEPTED."""
        raw = resolve(doc, self.path)
        if _quiet(raw) or not self.applies(doc):
            return None
        if isinstance(raw, float | str) and to_number(raw) is None and _is_float_text(raw):
            return "not a finite number"
        return f"metric {self.metric}: not a number"

    def value(self, doc: Any) -> float | None:
        return self.value_of(doc, _at(doc, self.key, self.path))

    def value_of(self, doc: Any, raw: Any) -> float | None:
        """``value`` of ``raw``, the value found at the rule's path."""
        if self.plain:
            return to_number(raw)
        if (self.when and not self.when.holds(doc)) or (self.unless and self.unless.holds(doc)):
            return None
        num = to_number(raw)
        if num is None:
            return None
        convert = self.convert
        if self.unit_path is not None:
            unit = resolve(doc, self.unit_path)
            if isinstance(unit, str) and unit in self.unit_map:
                convert = self.unit_map[unit]
        num = num * self.scale + self.offset
        return convert(num) if convert else num


class _Quirk:
    __slots__ = ("offset", "scale", "swap", "when")

    def __init__(self, spec: Quirk) -> None:
        self.when = _Cond(spec.when)
        self.swap = {spec.swap[0]: spec.swap[1], spec.swap[1]: spec.swap[0]} if spec.swap else {}
        self.scale, self.offset = spec.scale, spec.offset


class _EventRule:
    __slots__ = ("above", "active", "active_text", "below", "boolean", "clear", "clear_text", "detail", "field",
                 "key", "mask", "momentary", "open_ended", "path", "shared", "threshold", "type", "unless", "values",
                 "when")

    def __init__(self, spec: EventSpec) -> None:
        self.type = spec.type
        self.field = spec.path
        self.path = _path(spec.path)
        self.key = _top_key(self.path)
        self.active = {_hashable(normalize(v)) for v in spec.active}
        self.clear = {_hashable(normalize(v)) for v in spec.clear}
        self.active_text = [t.casefold() for t in spec.active_contains]
        self.clear_text = [t.casefold() for t in spec.clear_contains]
        self.below, self.above = spec.below, spec.above
        self.threshold = self.below is not None or self.above is not None
        self.mask = spec.mask
        self.momentary = spec.momentary
        self.when = _Cond(spec.when) if spec.when else None
        self.unless = _Cond(spec.unless) if spec.unless else None
        self.detail = {k: _path(p) for k, p in spec.detail.items()}
        # Momentary and text rules take any other value as "nothing happened"; listed values and
        # thresholds name every value they understand.
        self.open_ended = self.momentary or bool(self.active_text or self.clear_text)
        self.values = [*spec.active, *spec.clear]
        # A rule listing only booleans ("active: [true]": a second leak zone, end of life) understands both:
        # the other one is "not this", and the device's real state comes from another rule.
        self.boolean = bool(self.values) and all(isinstance(normalize(v), bool) for v in self.values)
        self.shared = False  # another rule reads the same field (set by CompiledProfile)

    def verdict(self, doc: Any) -> str | None:
        """Called when ``state`` gave nothing: see ACCEPTED."""
        raw = resolve(doc, self.path)
        if _quiet(raw) or (not self.path and isinstance(raw, dict | list)):  # "$" reads bare values only
            return None
        if (self.when and not self.when.holds(doc)) or (self.unless and self.unless.holds(doc)):
            return None
        if self.open_ended:
            return ACCEPTED
        if self.mask is not None or self.below is not None or self.above is not None:
            return ACCEPTED if to_number(raw) is not None else f"{self.type}: not a number"
        value = normalize(raw)
        if _hashable(value) in self.clear:  # a momentary rule's clear value
            return ACCEPTED
        if self.boolean and isinstance(value, bool):
            return ACCEPTED
        return f"{self.type}: not one of {self.values}"

    def state(self, doc: Any) -> tuple[EventState, Any] | None:
        raw = _at(doc, self.key, self.path)
        return None if raw is MISSING else self.state_of(doc, raw)

    def state_of(self, doc: Any, raw: Any) -> tuple[EventState, Any] | None:
        """``state`` of the value ``raw`` found at the rule's path."""
        if (self.when and not self.when.holds(doc)) or (self.unless and self.unless.holds(doc)):
            return None
        state: EventState | None = None
        if self.mask is not None:
            num = to_number(raw)
            if num is None:
                return None
            state = EventState.ACTIVE if int(num) & self.mask else EventState.CLEAR
        elif self.below is not None or self.above is not None:
            num = to_number(raw)
            if num is None:
                return None
            hit = num < self.below if self.below is not None else num > self.above  # type: ignore[operator]
            state = EventState.ACTIVE if hit else EventState.CLEAR
        else:
            v = _hashable(normalize(raw))
            if v in self.active or (self.active_text and _contains(raw, self.active_text)):
                state = EventState.ACTIVE
            elif v in self.clear or (self.clear_text and _contains(raw, self.clear_text)):
                state = EventState.CLEAR
        if state is None or (self.momentary and state is EventState.CLEAR):
            return None
        return state, raw


class CompiledProfile:
    """A validated profile ready to decode messages."""

    def __init__(self, spec: DeviceProfile) -> None:
        self.spec = spec
        self.name = spec.name
        self.topic: TopicTemplate | None = compile_template(spec.topic) if spec.topic else None
        self.requires = [_path(p) for p in spec.requires]
        self.codec: Callable[[bytes], dict[str, Any]] | None = (
            get_codec(spec.binary.codec, spec.binary.options) if spec.binary else None
        )
        self.binary_path = _path(spec.binary.path) if spec.binary and spec.binary.path else None
        self.ts_path = _path(spec.timestamp.path) if spec.timestamp else None
        self.ts_key = _top_key(self.ts_path) if self.ts_path is not None else None
        self.ts_zone = ZoneInfo(spec.timestamp.naive_tz) if spec.timestamp else ZoneInfo("UTC")
        self.ts_format = spec.timestamp.format if spec.timestamp else "auto"
        self.id_path = _path(spec.device_id.path) if spec.device_id.path else None
        self.id_sub_paths = [_path(p) for p in spec.device_id.sub_path]
        self.readings = [_ReadingRule(r) for r in spec.readings]
        # Several rules may yield one metric (a CO2 sensor's and a BME280's temperature): the first rule
        # that yields wins, so storage gets one value per device, metric and time.
        metrics = [(r.metric, r.sub_device, r.sub_device_path) for r in self.readings]
        self.first_wins = len(set(metrics)) != len(metrics) or any(r.sub_device_path for r in self.readings)
        self.events = [_EventRule(e) for e in spec.events]
        self.rules_at: dict[tuple[Segment, ...], list[_ReadingRule | _EventRule]] = {}
        rules: list[_ReadingRule | _EventRule] = [*self.readings, *self.events]
        for rule in rules:
            self.rules_at.setdefault(rule.path, []).append(rule)
        for rule in rules:
            rule.shared = len(self.rules_at[rule.path]) > 1
        self.quirks = [_Quirk(q) for q in spec.quirks]
        self.reads_bare = () in self.rules_at  # a "$" rule: bare strings/numbers are this profile's format

    # -- parsing -----------------------------------------------------------------------------------
    # Two stages, so profiles sharing a topic share the first: ``envelope`` (the payload as JSON, text
    # or bytes; the device id is read from it) and ``complete`` (this profile's binary codec, if any).
    @property
    def envelope_kind(self) -> tuple[str, bool]:
        return self.spec.format, self.spec.text_fallback

    def envelope(self, payload: bytes) -> Any:
        fmt = self.spec.format
        if fmt == "binary":
            return payload
        if fmt == "text":
            return _text(payload)
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            if self.spec.text_fallback:
                return _text(payload)
            raise DecodeError(f"malformed JSON: {exc}") from None

    def complete(self, envelope: Any) -> Any:
        """The document paths resolve against: the envelope plus the codec's fields under ``decoded``."""
        if self.codec is None:
            return envelope
        if self.spec.format == "binary":
            return {"decoded": self._run_codec(envelope)}
        if not isinstance(envelope, dict):
            raise DecodeError("expected a JSON object around the binary payload")
        doc = dict(envelope)  # shallow copy: other profiles may complete the same envelope
        doc["decoded"] = self._run_codec(self._extract_bytes(envelope))
        return doc

    def parse(self, payload: bytes, raw_bytes: bool = False) -> Any:
        """Payload -> document. ``raw_bytes``: the payload is the codec's input itself (a raw LoRaWAN
        frame) even when the profile normally receives it inside an envelope."""
        if raw_bytes:
            if self.codec is None:
                raise DecodeError(f"profile {self.name} has no binary codec for raw bytes")
            return {"decoded": self._run_codec(payload)}
        return self.complete(self.envelope(payload))

    def _extract_bytes(self, doc: Any) -> bytes:
        assert self.spec.binary is not None and self.binary_path is not None
        blob = resolve(doc, self.binary_path)
        if not isinstance(blob, str):
            raise DecodeError(f"no binary payload at {self.spec.binary.path!r}")
        try:
            if self.spec.binary.encoding == "base64":
                return base64.b64decode(blob, validate=True)
            if self.spec.binary.encoding == "hex":
                return bytes.fromhex(blob)
            return blob.encode("latin-1")
        except (binascii.Error, ValueError) as exc:
            raise DecodeError(f"bad {self.spec.binary.encoding} at {self.spec.binary.path!r}: {exc}") from None

    def _run_codec(self, data: bytes) -> dict[str, Any]:
        assert self.codec is not None
        try:
            return self.codec(data)
        except CodecError as exc:
            raise DecodeError(f"{self.spec.binary.codec if self.spec.binary else 'codec'}: {exc}") from None

    # -- selection ---------------------------------------------------------------------------------
    def accepts(self, doc: Any) -> bool:
        """True when every ``requires`` key is present, even as null (an idle SOS button reports
        ``"action": null``): used to choose among the profiles of one topic."""
        if not self.spec.auto_select:
            return False
        return all(resolve(doc, p) is not MISSING for p in self.requires)

    def device_id(self, doc: Any, topic_vars: dict[str, str] | None) -> str:
        ids = self.spec.device_id
        if ids.const is not None:
            return ids.const
        if ids.topic is not None:
            value: Any = (topic_vars or {}).get(ids.topic)
        else:
            assert self.id_path is not None
            value = resolve(doc, self.id_path)
        if value is MISSING or value is None or value == "" or isinstance(value, dict | list):
            raise DecodeError(f"profile {self.name}: no device id at {ids.topic or ids.path!r}")
        for p in self.id_sub_paths:
            sub = _sub_id(resolve(doc, p))
            if sub:
                return f"{value}/{sub}"
        return str(value)

    # -- decoding ----------------------------------------------------------------------------------
    def decode(self, doc: Any, device_id: str, received_at: datetime, institution_id: str | None = None) -> Decoded:
        ts = received_at
        if self.ts_path is not None:
            raw_ts = _at(doc, self.ts_key, self.ts_path)
            if raw_ts is not MISSING and raw_ts is not None:
                ts = trusted(parse_timestamp(raw_ts, self.ts_format, self.ts_zone), received_at)
        out = Decoded(self.name, device_id)
        if self.spec.ignore:
            return out
        # The hot path: per rule a few attribute reads, one dict lookup for a top-level field, and nothing
        # at all for an absent one (most rules of a profile name fields a given message does not carry).
        is_dict = type(doc) is dict
        used: list[tuple[Segment, ...]] = []  # shared fields a rule understood
        implausible: list[tuple[Segment, ...]] = []
        missed: list[_ReadingRule | _EventRule] = []  # rules that gave nothing from a present, non-null value
        first_wins = self.first_wins
        seen: set[tuple[str, str]] = set() if first_wins else _NEVER_SEEN  # (device, metric) already read
        readings = out.readings
        quirks = [q for q in self.quirks if q.when.holds(doc)] if self.quirks else None
        for r in self.readings:
            if quirks:
                v, source = self._fixed(r, quirks, doc)
                if v is None:
                    missed.append(source)  # judged at the field it read
                    continue
            elif r.plain:  # inlined: most readings are a plain number at a path
                key = r.key
                raw = (doc.get(key, MISSING) if is_dict else MISSING) if key is not None else resolve(doc, r.path)
                if raw is MISSING or raw is None:  # absent or null: nothing to judge
                    continue
                kind = type(raw)
                if kind is float and raw - raw == 0.0:  # finite
                    v = raw
                elif kind is int:
                    v = float(raw)
                else:
                    num = to_number(raw)
                    if num is None:
                        missed.append(r)
                        continue
                    v = num
            else:
                key = r.key
                raw = (doc.get(key, MISSING) if is_dict else MISSING) if key is not None else resolve(doc, r.path)
                if raw is MISSING or raw is None:  # absent or null: nothing to judge
                    continue
                num = r.value_of(doc, raw)
                if num is None:
                    missed.append(r)
                    continue
                v = num
            if r.shared:
                used.append(r.path)
            dev = device_id if r.own_device else r.device(doc, device_id)
            if r.low <= v <= r.high:
                if first_wins:
                    if (dev, r.metric) in seen:
                        continue
                    seen.add((dev, r.metric))
                readings.append(Reading(dev, r.metric, v, ts, institution_id))
            else:  # a broken sensor, not a measurement: kept as a fault event, never stored as a reading
                implausible.append(r.path)
                out.implausible.append(Reading(dev, r.metric, v, ts, institution_id, Quality.IMPLAUSIBLE))
                self._fault(out, ts, institution_id, f"{r.metric} {v:g}: {r.range.check(v)}",
                            {"metric": r.metric, "value": _shown(v), "unit": METRIC_UNITS[r.metric]})
        for e in self.events:
            key = e.key
            raw = (doc.get(key, MISSING) if is_dict else MISSING) if key is not None else resolve(doc, e.path)
            if raw is MISSING:  # absent: no state, nothing to judge
                continue
            if implausible and e.threshold and e.path in implausible:
                continue  # no "battery low" from a battery reading of -1e308
            hit = e.state_of(doc, raw)
            if hit is None:
                if raw is not None:  # null is quiet: never judged
                    missed.append(e)
                continue
            if e.shared:
                used.append(e.path)
            state, raw = hit
            detail: dict[str, Any] = {"profile": self.name, "value": raw}
            for dkey, p in e.detail.items():
                dv = resolve(doc, p)
                if dv is not MISSING:
                    detail[dkey] = dv
            out.events.append(Event(device_id, e.type, state, ts, institution_id, detail))
        if missed:
            self._unusable_fields(out, doc, ts, institution_id, missed, used)
        if not readings and not out.events and not is_dict and not (
                self.reads_bare and isinstance(doc, str | int | float)):
            self._fault(out, ts, institution_id, f"payload is {_kind_of(doc)}, not the JSON object "
                        f"profile {self.name} reads", {"field": "$", "value": _shown(doc)})
        return out

    def _fixed(self, r: _ReadingRule, quirks: list[_Quirk], doc: Any) -> tuple[float | None, _ReadingRule]:
        """The reading's value with the active quirks fixed, and the rule whose field gave it: swapped (the
        first quirk swapping the metric wins; the partner metric's first rule of the same probe that yields
        gives the value), then scaled and offset."""
        source = r
        for q in quirks:
            partner = q.swap.get(r.metric)
            if partner is not None:
                for o in self.readings:
                    if o.metric == partner and (o.sub_device, o.sub_device_path) == (r.sub_device, r.sub_device_path):
                        source = o
                        if o.value(doc) is not None:
                            break
                break
        v = source.value(doc)
        if v is None:
            return None, source
        for q in quirks:
            v = v * q.scale.get(r.metric, 1.0) + q.offset.get(r.metric, 0.0)
        return v, source

    def _unusable_fields(self, out: Decoded, doc: Any, ts: datetime, institution_id: str | None,
                         missed: list[_ReadingRule | _EventRule], used: list[tuple[Segment, ...]]) -> None:
        """A field is unusable when it holds a value (not null or "") that no rule reading it understood:
        several rules often share one field (a status code), so the verdict is the field's, not a rule's."""
        for rule in missed:
            if rule.shared:  # judged once, and not at all when one of its rules understood it
                if rule.path in used:
                    continue
                used.append(rule.path)
            raw = resolve(doc, rule.path)
            if raw is MISSING or raw is None or _quiet(raw):  # mostly an optional field the device did not send
                continue
            verdicts = [r.verdict(doc) for r in self.rules_at[rule.path]]
            reasons = [v for v in verdicts if v]
            if reasons and ACCEPTED not in verdicts:
                self._fault(out, ts, institution_id, f"{rule.field} = {_shown(raw)!r}: {'; '.join(reasons)}",
                            {"field": rule.field, "value": _shown(raw)})

    def _fault(self, out: Decoded, ts: datetime, institution_id: str | None, problem: str,
               detail: dict[str, Any]) -> None:
        out.problems.append(problem)
        out.events.append(Event(out.device_id, EventType.SENSOR_FAULT, EventState.ACTIVE, ts, institution_id,
                                {"profile": self.name, **detail, "reason": problem}))


def _is_float_text(raw: float | str) -> bool:
    """NaN, infinities and overflowing numbers ("1e999"): numbers, but not finite ones."""
    try:
        return not math.isfinite(float(raw))
    except ValueError:
        return False


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise DecodeError("payload is not UTF-8 text") from None
