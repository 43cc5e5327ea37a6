"""Topic templates: ``zigbee2mqtt/{device}`` -> regex with named captures + MQTT subscription filter.

``{name}`` captures exactly one topic level (so friendly names with spaces or umlauts stay whole);
``{+name}`` as the last level captures the rest of the topic, several levels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VAR = re.compile(r"^\{(\+?)([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    template: str
    regex: re.Pattern[str]
    subscription: str
    variables: tuple[str, ...]

    def match(self, topic: str) -> dict[str, str] | None:
        m = self.regex.match(topic)
        return m.groupdict() if m else None

    def filter_for(self, values: dict[str, str]) -> str | None:
        """The subscription filter with the given variables filled in (the others stay wildcards);
        None when a value cannot stand in a topic level (empty, or holding ``/``, ``+`` or ``#``)."""
        if any(not v or any(c in v for c in "/+#") for v in values.values()):
            return None
        levels: list[str] = []
        for level, sub in zip(self.template.split("/"), self.subscription.split("/"), strict=True):
            m = _VAR.match(level)
            levels.append(values.get(m.group(2), sub) if m else sub)
        return "/".join(levels)


def compile_template(template: str) -> TopicTemplate:
    levels = template.split("/")
    parts: list[str] = []
    subs: list[str] = []
    names: list[str] = []
    for i, level in enumerate(levels):
        m = _VAR.match(level)
        if m:
            multi, name = m.groups()
            if name in names:
                raise ValueError(f"topic template {template!r}: variable {name!r} used twice")
            names.append(name)
            if multi:
                if i != len(levels) - 1:
                    raise ValueError(f"topic template {template!r}: {{+{name}}} must be the last level")
                parts.append(f"(?P<{name}>.+)")
                subs.append("#")
            else:
                parts.append(f"(?P<{name}>[^/]+)")
                subs.append("+")
        else:
            if any(c in level for c in "+#{}") or (level == "" and len(levels) > 1 and 0 < i < len(levels) - 1):
                raise ValueError(f"topic template {template!r}: bad level {level!r}")
            parts.append(re.escape(level))
            subs.append(level)
    return TopicTemplate(template, re.compile("^" + "/".join(parts) + "$"), "/".join(subs), tuple(names))
