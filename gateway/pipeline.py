"""The ingest pipeline shared by every source (MQTT, HTTP push):

payload -> profile match -> decode -> institution from the registry -> events to the event store
(alarm path) and readings to the telemetry batcher; undecodable payloads to the dead-letter store.
``ack`` runs once everything the message produced is durable.

Nothing is dropped without a trace: a message ends as readings/events, or as a dead letter with the
reason. A device that sends what its profile cannot use (wrong shape, unusable values, implausible
readings) also gets a ``fault.sensor`` event: a detector that speaks garbage is a broken detector.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from anxin.metrics import Metrics
from anxin.model import Event, EventState, EventType
from gateway.dead_letters import DeadLetterStore
from gateway.decoder import Decoded, DecodeError
from gateway.event_store import EventStore
from gateway.profiles import NoProfileError, ProfileSet
from gateway.registry import Registry
from gateway.telemetry_batcher import TelemetryBatcher

log = logging.getLogger(__name__)

Ack = Callable[[], None]

TOO_LARGE_KEEP = 1024  # bytes of an oversized payload kept in its dead letter


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
        max_payload_bytes: int = 256 * 1024,
    ) -> None:
        self.duplicate_window_s = duplicate_window_s
        self.max_payload_bytes = max_payload_bytes
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
        received_at = datetime.now(UTC)
        origin = f"{source}:{topic}"
        if len(payload) > self.max_payload_bytes:  # never decoded: no parser sees a payload this large
            rejected = Rejected("too_large", f"payload too large: {len(payload)} bytes, limit "
                                f"{self.max_payload_bytes} (ANXIN_MQTT_MAX_PAYLOAD_BYTES); first "
                                f"{min(len(payload), TOO_LARGE_KEEP)} bytes kept")
            self.dead_letters.put(rejected.kind, origin, payload[:TOO_LARGE_KEEP], rejected.reason, received_at, ack)
            return rejected
        if self._is_repeat(topic, payload):
            ack()
            return Duplicate()
        decoded_or = self._decode(topic, payload, profile, origin, received_at)
        if isinstance(decoded_or, Rejected):
            rejected = decoded_or
        else:
            decoded = decoded_or
            if self.duplicate_window_s > 0:
                alarm = False
                for e in decoded.events:  # a loop, not any(<generator>): this runs for every message
                    if e.state is EventState.ACTIVE:
                        alarm = True
                        break
                self._last[topic] = (payload, time.monotonic(), alarm)
            if self.registry.lookup(decoded.device_id) is None:
                self.metrics.inc("anxin_unregistered_messages_total")
            if decoded.usable or not decoded.problems:
                return self._route(decoded, origin, received_at, ack)
            # Nothing usable: the payload is kept as a dead letter beside the device's fault events.
            rejected = Rejected("unusable", f"profile {decoded.profile}: " + "; ".join(decoded.problems))
            done = _AckAfter(3 if decoded.implausible else 2, ack)
            self.events.persist(decoded.events, origin, received_at, done)
            if decoded.implausible:  # what the sensor said, flagged (never a reading)
                self.telemetry.add(decoded.implausible, done)
            self.dead_letters.put(rejected.kind, origin, payload, rejected.reason, received_at, done)
            return rejected
        fault = self._registered_device_fault(topic, payload, rejected, received_at) if rejected.kind in (
            "no_profile", "malformed") else None
        if fault is not None:
            done = _AckAfter(2, ack)
            self.events.persist([fault], origin, received_at, done)
            self.dead_letters.put(rejected.kind, origin, payload, rejected.reason, received_at, done)
        else:
            self.dead_letters.put(rejected.kind, origin, payload, rejected.reason, received_at, ack)
        return rejected

    def _decode(self, topic: str, payload: bytes, profile: str | None, origin: str,
                received_at: datetime) -> Decoded | Rejected:
        try:
            m = self.profiles.match(topic, payload, profile=profile, assigned=self.registry.assigned)
            info = self.registry.lookup(m.device_id)
            return m.profile.decode(m.doc, m.device_id, received_at, info.institution_id if info else None)
        except NoProfileError as exc:
            return Rejected("no_profile", str(exc))
        except DecodeError as exc:
            return Rejected("malformed", str(exc))
        except Exception as exc:  # a codec bug must not take the gateway down with it
            log.exception("decoder crashed on %s", origin)
            return Rejected("internal_error", f"internal error: {exc!r}")

    def replay(self, origin: str, payload: bytes, received_at: datetime, ack: Ack) -> Decoded | Rejected:
        """A dead letter's payload decoded again (a profile or the registry fixed since), from the source
        it came by ("mqtt:<topic>" or "http:<profile>") and with the time it was received. Decoded, it is
        stored like a fresh message (its alarms alert) and ``ack`` runs once durable. Rejected again,
        nothing new is stored (no second dead letter or fault event): the caller keeps the old one."""
        source, _, topic = origin.partition(":")
        if source not in ("mqtt", "http") or not topic:
            return Rejected("unknown_source", f"cannot replay a message from {origin!r}")
        if len(payload) > self.max_payload_bytes:
            return Rejected("too_large", f"payload too large: {len(payload)} bytes, limit {self.max_payload_bytes}")
        decoded = self._decode(topic, payload, topic if source == "http" else None, origin, received_at)
        if isinstance(decoded, Rejected):
            return decoded
        if not decoded.usable and decoded.problems:
            return Rejected("unusable", f"profile {decoded.profile}: " + "; ".join(decoded.problems))
        return self._route(decoded, origin, received_at, ack)

    def _registered_device_fault(self, topic: str, payload: bytes, rejected: Rejected,
                                 received_at: datetime) -> Event | None:
        """A fault.sensor event when an undecodable message comes from a registered device named by its
        topic. An empty payload is not a device speaking (it deletes a retained message)."""
        if not payload:
            return None
        for p, vars_ in self.profiles.candidates(topic):
            var = p.spec.device_id.topic
            device_id = vars_.get(var) if var is not None else None
            info = self.registry.lookup(device_id) if device_id else None
            if device_id and info is not None:
                return Event(device_id, EventType.SENSOR_FAULT, EventState.ACTIVE, received_at, info.institution_id,
                             {"profile": info.profile or "", "reason": rejected.reason[:500]})
        return None

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
        readings = decoded.readings
        if decoded.implausible:  # flagged, stored apart from the readings (anxin.model.Quality)
            readings = [*readings, *decoded.implausible]
        if decoded.events and readings:
            ack = _AckAfter(2, ack)
        if decoded.events:
            self.events.persist(decoded.events, origin, received_at, ack)
        if readings:
            self.telemetry.add(readings, ack)
        elif not decoded.events:
            ack()  # nothing to store (heartbeat, idle button, ignored topic)
        return decoded
