"""Telemetry sinks: where readings go (InfluxDB in production, SQLite for the embedded demo)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from anxin.model import Reading


class TelemetrySink(Protocol):
    def write(self, readings: Sequence[Reading]) -> None:
        """Return only once the batch is durable (stored, or spooled on disk); raise if even that fails."""

    def close(self) -> None: ...
