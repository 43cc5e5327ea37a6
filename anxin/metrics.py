"""Process counters exposed in the Prometheus text format at /metrics."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

# Gauge that says whether an MQTT ingest session holds its subscriptions (readiness reads it from workers).
MQTT_SUBSCRIBED = "anxin_mqtt_subscribed"

Labels = tuple[tuple[str, str], ...]
# What another process (an ingest worker) reports: {"counters": [[name, labels, value]], "gauges": [...]}
Snapshot = dict[str, Any]


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.inc_key((name, tuple(sorted(labels.items()))), amount)

    @staticmethod
    def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        """A counter's key, for hot paths that count the same series again and again."""
        return name, tuple(sorted(labels.items()))

    def inc_key(self, key: tuple[str, tuple[tuple[str, str], ...]], amount: float = 1.0) -> None:
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + amount

    def get(self, name: str, **labels: str) -> float:
        return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._gauges[name] = (help_text, read)

    def snapshot(self) -> Snapshot:
        """Counters and current gauge values, as JSON-able data for another process to render."""
        with self._lock:
            counters = [[name, [list(kv) for kv in labels], value] for (name, labels), value in self._counters.items()]
        gauges = [[name, help_text, read()] for name, (help_text, read) in self._gauges.items()]
        return {"counters": counters, "gauges": gauges}

    def render(self, others: Sequence[tuple[dict[str, str], Snapshot]] = ()) -> str:
        """Prometheus text: this process's series, plus those of ``others`` (each with its own labels,
        e.g. ``worker="1"``), every family under one TYPE line."""
        with self._lock:
            counters: dict[tuple[str, Labels], float] = dict(self._counters)
        gauges: dict[str, tuple[str, list[tuple[Labels, float]]]] = {
            name: (help_text, [((), read())]) for name, (help_text, read) in self._gauges.items()}
        for extra, snap in others:
            for name, labels, value in snap.get("counters", []):
                key = (name, tuple(sorted([*(tuple(kv) for kv in labels), *extra.items()])))
                counters[key] = counters.get(key, 0.0) + float(value)
            for name, help_text, value in snap.get("gauges", []):
                gauges.setdefault(name, (help_text, []))[1].append((tuple(sorted(extra.items())), float(value)))
        lines: list[str] = []
        seen: set[str] = set()
        for (name, labels), value in sorted(counters.items()):
            if name not in seen:
                seen.add(name)
                lines.append(f"# TYPE {name} counter")
            lines.append(_sample(name, labels, value))
        for name, (help_text, samples) in sorted(gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            lines += [_sample(name, labels, value) for labels, value in samples]
        return "\n".join(lines) + "\n"


def _sample(name: str, labels: Labels, value: float) -> str:
    label_text = ",".join(f'{k}="{_esc(v)}"' for k, v in labels)
    return f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
