"""The ingest pipeline shared by every source (MQTT, HTTP push):

payload -> profile match -> decode -> institution from the registry -> events to the event store
(alarm path) and readings to the telemetry batcher; undecodable payloads to the dead-letter store.
``ack`` runs once everything the message produced is durable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from anxin.metrics import Metrics
from gateway.dead_letters import DeadLetterStore
from gateway.decoder import Decoded, DecodeError
from gateway.event_store import EventStore
from gateway.profiles import NoProfileError, ProfileSet
from gateway.registry import Registry
from gateway.telemetry_batcher import TelemetryBatcher

log = logging.getLogger(__name__)

Ack = Callable[[], None]


def _noop() -> None:
    pass


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a message was dead-lettered (returned to HTTP callers so the platform sees the reason)."""

    kind: str
    reason: str


class _AckAfter:
    """Calls ``ack`` after ``parts`` completions (events committed + readings durable)."""

    __slots__ = ("_ack", "_left", "_lock")

    def __init__(self, parts: int, ack: Ack) -> None:
        self._left = parts
        self._ack = ack
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self._left -= 1
            fire = self._left == 0
        if fire:
            self._ack()


class Pipeline:
    def __init__(
        self,
        profiles: ProfileSet,
        registry: Registry,
        events: EventStore,
        telemetry: TelemetryBatcher,
        dead_letters: DeadLetterStore,
        metrics: Metrics,
    ) -> None:
        self.profiles = profiles
        self.registry = registry
        self.events = events
        self.telemetry = telemetry
        self.dead_letters = dead_letters
        self.metrics = metrics

    def submit(
        self,
        topic: str,
        payload: bytes,
        ack: Ack | None = None,
        *,
        source: str = "mqtt",
        profile: str | None = None,
    ) -> Decoded | Rejected:
        """Decode and route one message. Never raises for bad input: it is dead-lettered instead."""
        received_at = datetime.now(UTC)
        ack = ack or _noop
        origin = f"{source}:{topic}"
        try:
            m = self.profiles.match(topic, payload, profile=profile, assigned=self.registry.assigned)
            decoded = m.profile.decode(m.doc, m.device_id, received_at)
        except NoProfileError as exc:
            rejected = Rejected("no_profile", str(exc))
        except DecodeError as exc:
            rejected = Rejected("malformed", str(exc))
        except Exception as exc:  # a codec bug must not take the gateway down with it
            log.exception("decoder crashed on %s", origin)
            rejected = Rejected("internal_error", f"internal error: {exc!r}")
        else:
            return self._route(decoded, origin, received_at, ack)
        self.dead_letters.put(rejected.kind, origin, payload, rejected.reason, received_at, ack)
        return rejected

    def _route(self, decoded: Decoded, origin: str, received_at: datetime, ack: Ack) -> Decoded:
        self.metrics.inc("anxin_messages_total", profile=decoded.profile)
        info = self.registry.lookup(decoded.device_id)
        if info is None:
            self.metrics.inc("anxin_unregistered_messages_total")
        elif info.institution_id is not None:
            inst = info.institution_id
            for r in decoded.readings:
                r.institution_id = inst
            for e in decoded.events:
                e.institution_id = inst
        if decoded.events and decoded.readings:
            ack = _AckAfter(2, ack)
        if decoded.events:
            self.events.persist(decoded.events, origin, received_at, ack)
        if decoded.readings:
            self.telemetry.add(decoded.readings, ack)
        elif not decoded.events:
            ack()  # nothing to store (heartbeat, idle button, ignored topic)
        return decoded
