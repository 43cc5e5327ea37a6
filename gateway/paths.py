"""Field paths into decoded payloads.

Syntax: dotted names with bracket segments for keys that contain dots, colons or spaces and for list
indexes: ``MHZ19B.CarbonDioxide``, ``SDS0X1["PM2.5"]``, ``params["temperature:0"].tC``, ``rxInfo[0].rssi``.
Paths are parsed once when a profile loads; resolving is a plain loop.
A ``*`` segment stands for the single (first) value of an object whose key varies per device, as in
Tasmota's ``ZbReceived.*.ZoneStatus`` (the key is the Zigbee device's address or name).
"""

from __future__ import annotations

import re
from typing import Any

Segment = str | int
_MISSING = object()

_TOKEN = re.compile(r"""\[\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|(-?\d+))\s*\]|([^.\[\]]+)|(\.)""")


class PathError(ValueError):
    pass


def parse_path(text: str) -> tuple[Segment, ...]:
    """Parse ``a.b["c.d"][0]`` into ``("a", "b", "c.d", 0)``."""
    if not text or text.strip() != text:
        raise PathError(f"empty or padded path {text!r}")
    segments: list[Segment] = []
    pos = 0
    expect_name = True  # a dot must be followed by a name
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise PathError(f"bad path {text!r} at offset {pos}")
        dq, sq, idx, name, dot = m.groups()
        if dot:
            if expect_name:
                raise PathError(f"bad path {text!r}: empty segment at offset {pos}")
            expect_name = True
        elif name is not None:
            if not expect_name:
                raise PathError(f"bad path {text!r}: missing dot before {name!r}")
            segments.append(name)
            expect_name = False
        elif idx is not None:
            segments.append(int(idx))
            expect_name = False
        else:
            key = dq if dq is not None else sq
            assert key is not None
            segments.append(re.sub(r"\\(.)", r"\1", key))
            expect_name = False
        pos = m.end()
    if expect_name:
        raise PathError(f"bad path {text!r}: ends with a dot")
    return tuple(segments)


def resolve(doc: Any, path: tuple[Segment, ...]) -> Any:
    """Value at ``path`` or ``MISSING`` when any step is absent (None is a present value)."""
    cur = doc
    for seg in path:
        if type(seg) is int:
            if type(cur) is list and -len(cur) <= seg < len(cur):
                cur = cur[seg]
                continue
            return _MISSING
        if type(cur) is dict:
            nxt = cur.get(seg, _MISSING)
            if nxt is _MISSING:
                if seg != "*" or not cur:
                    return _MISSING
                nxt = next(iter(cur.values()))
            cur = nxt
            continue
        return _MISSING
    return cur


MISSING: Any = _MISSING
