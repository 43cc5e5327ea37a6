"""The ingest pipeline shared by every source (MQTT, HTTP push):

payload -> profile match -> decode -> institution from the registry -> events to the event store
(alarm path) and readings to the telemetry batcher; undecodable payloads to the dead-letter store.
``ack`` runs once everything the message produced is durable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from anxin.metrics import Metrics
from anxin.model import EventState
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


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A byte-identical repeat of the topic's previous message, skipped."""


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
        *,
        duplicate_window_s: float = 2.0,
    ) -> None:
        self.duplicate_window_s = duplicate_window_s
        # topic -> (payload, monotonic time, carried an active event); one entry per device topic
        self._last: dict[str, tuple[bytes, float, bool]] = {}
        self.profiles = profiles
        self._message_keys: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
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
    ) -> Decoded | Rejected | Duplicate:
        """Decode and route one message. Never raises for bad input: it is dead-lettered instead."""
        ack = ack or _noop
        if self._is_repeat(topic, payload):
            ack()
            return Duplicate()
        received_at = datetime.now(UTC)
        origin = f"{source}:{topic}"
        try:
            m = self.profiles.match(topic, payload, profile=profile, assigned=self.registry.assigned)
            info = self.registry.lookup(m.device_id)
            decoded = m.profile.decode(m.doc, m.device_id, received_at, info.institution_id if info else None)
        except NoProfileError as exc:
            rejected = Rejected("no_profile", str(exc))
        except DecodeError as exc:
            rejected = Rejected("malformed", str(exc))
        except Exception as exc:  # a codec bug must not take the gateway down with it
            log.exception("decoder crashed on %s", origin)
            rejected = Rejected("internal_error", f"internal error: {exc!r}")
        else:
            if self.duplicate_window_s > 0:
                alarm = bool(decoded.events) and any(e.state is EventState.ACTIVE for e in decoded.events)
                self._last[topic] = (payload, time.monotonic(), alarm)
            if info is None:
                self.metrics.inc("anxin_unregistered_messages_total")
            return self._route(decoded, origin, received_at, ack)
        self.dead_letters.put(rejected.kind, origin, payload, rejected.reason, received_at, ack)
        return rejected

    def _is_repeat(self, topic: str, payload: bytes) -> bool:
        """Some devices send the same report several times a second (Aqara sensors via zigbee2mqtt).
        A byte-identical repeat within the window is skipped, unless it carried an active event:
        alarms are never suppressed."""
        last = self._last.get(topic)
        if last is None or last[2] or last[0] != payload:
            return False
        if time.monotonic() - last[1] > self.duplicate_window_s:
            return False
        self.metrics.inc("anxin_duplicates_total")
        return True

    def _route(self, decoded: Decoded, origin: str, received_at: datetime, ack: Ack) -> Decoded:
        key = self._message_keys.get(decoded.profile)
        if key is None:
            key = self.metrics.key("anxin_messages_total", profile=decoded.profile)
            self._message_keys[decoded.profile] = key
        self.metrics.inc_key(key)
        if decoded.events and decoded.readings:
            ack = _AckAfter(2, ack)
        if decoded.events:
            self.events.persist(decoded.events, origin, received_at, ack)
        if decoded.readings:
            self.telemetry.add(decoded.readings, ack)
        elif not decoded.events:
            ack()  # nothing to store (heartbeat, idle button, ignored topic)
        return decoded
