"""Telemetry sinks: where readings go (InfluxDB in production, SQLite for the embedded demo)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from anxin.model import Reading


class TelemetrySink(Protocol):
    def write(self, readings: Sequence[Reading]) -> None:
        """Return only once the batch is durable: stored, or safely spooled on disk.

        Raises only if even that is impossible (disk full); the caller then keeps the batch and retries.
        """

    def close(self) -> None:
        """Release connections and threads; anything spooled stays on disk for the next start."""
