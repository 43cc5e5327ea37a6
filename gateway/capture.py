"""Decoding a site's MQTT capture (``mosquitto_sub -v`` output: topic, a space, the payload) line by line,
as the gateway would, for ``anxin decode --file``: what each line produced, or why it would be dead-lettered."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.decoder import DecodeError
from gateway.profiles import NoProfileError, ProfileSet


@dataclass(slots=True)
class LineReport:
    line: int
    topic: str
    profile: str | None = None
    device_id: str | None = None
    readings: list[tuple[str, str, float, str]] = field(default_factory=list)  # device, metric, value, unit
    events: list[tuple[str, str, str]] = field(default_factory=list)  # device, type, state
    dead_letter: str | None = None  # the pipeline's kind: no_profile | malformed | internal_error
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line, "topic": self.topic, "profile": self.profile, "device_id": self.device_id,
            "readings": [{"device_id": d, "metric": m, "value": v, "unit": u} for d, m, v, u in self.readings],
            "events": [{"device_id": d, "type": t, "state": s} for d, t, s in self.events],
            "dead_letter": self.dead_letter, "reason": self.reason,
        }


def split_line(line: str, profiles: ProfileSet) -> tuple[str, str]:
    """``mosquitto_sub -v`` separates topic and payload by one space, but zigbee2mqtt friendly names may
    hold spaces too. A payload starting a JSON object/array marks the split; otherwise the longest topic
    prefix that some profile's template matches; otherwise the first space."""
    spaces = [i for i, c in enumerate(line) if c == " "]
    if not spaces:
        return line, ""
    for i in spaces:
        if line[i + 1:i + 2] in ("{", "["):
            return line[:i], line[i + 1:]
    matching = [i for i in spaces if profiles.candidates(line[:i])]
    i = matching[-1] if matching else spaces[0]
    return line[:i], line[i + 1:]


def decode_capture(profiles: ProfileSet, lines: Iterable[str], *, profile: str | None = None,
                   assigned: dict[str, str] | None = None) -> list[LineReport]:
    """One report per non-blank, non-comment line (``#`` starts a comment line)."""
    out: list[LineReport] = []
    for n, raw in enumerate(lines, start=1):
        text = raw.rstrip("\r\n")
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        topic, payload = split_line(text, profiles)
        rep = LineReport(n, topic)
        try:
            m = profiles.match(topic, payload.encode(), profile=profile, assigned=assigned)
            d = m.profile.decode(m.doc, m.device_id, datetime.now(UTC))
        except NoProfileError as exc:
            rep.dead_letter, rep.reason = "no_profile", str(exc)
        except DecodeError as exc:
            rep.dead_letter, rep.reason = "malformed", str(exc)
        except Exception as exc:  # a codec bug: reported like the pipeline dead-letters it
            rep.dead_letter, rep.reason = "internal_error", f"internal error: {exc!r}"
        else:
            rep.profile, rep.device_id = d.profile, d.device_id
            rep.readings = [(r.device_id, r.metric, r.value, r.unit) for r in d.readings]
            rep.events = [(e.device_id, e.type.value, e.state.value) for e in d.events]
        out.append(rep)
    return out


_STATE_ZH = {"active": "发生", "clear": "恢复"}


def format_line(rep: LineReport) -> str:
    head = f"L{rep.line} {rep.topic}"
    if rep.dead_letter is not None:
        return f"{head} -> 死信 dead letter ({rep.dead_letter}): {rep.reason}"
    parts: list[str] = []
    for dev, typ, state in rep.events:
        where = "" if dev == rep.device_id else f" [{dev}]"
        parts.append(f"{_STATE_ZH[state]} {typ} {state}{where}")
    for dev, metric, value, unit in rep.readings:
        where = "" if dev == rep.device_id else f" [{dev}]"
        parts.append(f"{metric}={value:g} {unit}{where}")
    body = "; ".join(parts) if parts else "无内容 nothing to store (recognised)"
    return f"{head} -> {rep.profile} [{rep.device_id}]: {body}"


def summary(reports: list[LineReport]) -> str:
    dead = Counter(r.dead_letter for r in reports if r.dead_letter)
    decoded = [r for r in reports if r.dead_letter is None]
    events = Counter(f"{t} {s}" for r in decoded for _, t, s in r.events)
    by_profile = Counter(r.profile for r in decoded)
    empty = sum(1 for r in decoded if not r.events and not r.readings)
    lines = [
        f"共 {len(reports)} 条消息 messages: {len(decoded)} 已解码 decoded ({empty} 无内容 nothing to store), "
        f"{sum(dead.values())} 死信 dead letters"
        + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(dead.items())) + ")" if dead else ""),
        f"读数 readings: {sum(len(r.readings) for r in decoded)}; 事件 events: "
        + (", ".join(f"{k} ×{v}" for k, v in sorted(events.items())) or "0"),
        "设备配置 profiles: " + (", ".join(f"{k} ×{v}" for k, v in sorted(by_profile.items())) or "-"),
    ]
    return "\n".join(lines)
