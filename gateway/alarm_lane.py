"""The alarm lane: life-safety devices get an MQTT session of their own.

Under heavy telemetry the ingest sessions run behind: the broker queues their messages, and a panic
press published into that queue waits its turn behind seconds of readings. So the main process (which
runs the alerting engine) holds a second session, subscribed to the exact topics of the registered
devices whose profile raises a life-safety event (panic, smoke, gas). The broker delivers those at once
on the quiet session; the ingest sessions still receive them through their wildcards and acknowledge
them unread while the lane holds them.

The hand-over is kept safe through the database: the lane records a topic in ``alarm_lane_topics`` only
after the broker granted the subscription, and renews a short lease on it while connected. Ingest
sessions leave a topic alone only while that lease runs; when the lane stops, loses its broker or its
process dies, the lease lapses and ingest takes the topics back. Meanwhile the lane's persistent session
keeps queuing at the broker, so a message may be processed twice (an event appended to the same
incident) but never by nobody. A clean stop leaves the leases to lapse, so a quick restart finds the
topics still held and takes the queued messages from its own session without duplicates.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from anxin.db import AlarmLaneTopic
from anxin.model import LIFE_SAFETY
from gateway.mqtt_source import MqttSource
from gateway.profiles import ProfileSet
from gateway.registry import Registry

log = logging.getLogger(__name__)

LEASE_S = 15.0
RENEW_S = 5.0


def lane_topics(registry: Registry, profiles: ProfileSet) -> set[str]:
    """Topic filters of registered devices whose assigned profile raises a life-safety event and names
    the device in its topic (devices identified from the payload stay on the ingest path)."""
    out: set[str] = set()
    for device_id, info in registry.items():
        for profile in profiles.variants.get(info.profile or "", []):  # each network server's topic
            if profile.topic is None or profile.spec.device_id.topic is None:
                continue
            if not any(e.type in LIFE_SAFETY for e in profile.spec.events):
                continue
            topic = profile.topic.filter_for({profile.spec.device_id.topic: device_id})
            if topic is not None:
                out.add(topic)
    return out


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest)."""
    f_levels, t_levels = topic_filter.split("/"), topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels) or (f != "+" and f != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


class AlarmLane:
    """Main process: subscribes the life-safety topics on its own session and keeps their leases."""

    def __init__(self, source: MqttSource, registry: Registry, profiles: ProfileSet,
                 sessions: sessionmaker[Session], on_renew: Callable[[], None] | None = None) -> None:
        self.source = source
        self.ready = threading.Event()  # the first sync is done: the lane holds its topics
        self._on_renew = on_renew  # the ingest session of this process reads the new leases at once
        self._registry = registry
        self._profiles = profiles
        self._sessions = sessions
        self._held: set[str] = set()  # granted by the broker on this session
        # lane_topics of one registry snapshot: it walks every device, so only once per refresh
        self._wanted: tuple[object, set[str]] = (None, set())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alarm-lane", daemon=True)

    def start(self) -> None:
        self.source.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        # The leases are left to run out: a restart within LEASE_S finds the topics still held and the
        # broker's queue for this session intact, so nothing is processed twice.
        self.source.stop()

    def held(self) -> set[str]:
        return set(self._held)

    def sync(self) -> bool:
        """Subscribe new topics, then renew the leases of all held ones; False while disconnected."""
        if not self.source.connected.is_set():
            return False
        snapshot = self._registry.assigned
        if self._wanted[0] is not snapshot:
            self._wanted = (snapshot, lane_topics(self._registry, self._profiles))
        new = sorted(self._wanted[1] - self._held)
        if new and self.source.subscribe(new):
            self._held.update(new)
            log.info("alarm lane: holding %d topics (%d new)", len(self._held), len(new))
        if not self.source.connected.is_set():  # lost during the subscribe: let the leases lapse
            return False
        if self._held:  # nothing held, nothing to renew: no write every half second on an idle lane
            self._renew(self._held)
            if self._on_renew is not None:
                self._on_renew()
        self.ready.set()
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # database or broker trouble: the leases lapse and ingest takes over
                log.exception("alarm lane: sync failed")
            self._stop.wait(RENEW_S if self._held else 0.5)

    def _renew(self, topics: Iterable[str]) -> None:
        """One short write: the lease of every held topic in a few UPDATEs, rows only for new ones."""
        until = datetime.now(UTC) + timedelta(seconds=LEASE_S)
        held = sorted(topics)
        with self._sessions.begin() as s:
            known: set[str] = set()
            for i in range(0, len(held), 500):
                chunk = held[i:i + 500]
                known.update(s.scalars(select(AlarmLaneTopic.topic).where(AlarmLaneTopic.topic.in_(chunk))))
                s.execute(update(AlarmLaneTopic).where(AlarmLaneTopic.topic.in_(chunk)).values(alive_until=until))
            s.add_all(AlarmLaneTopic(topic=t, alive_until=until) for t in held if t not in known)

    def release(self) -> None:
        """Hand the topics back to ingest at once instead of when the leases lapse."""
        if not self._held:
            return
        try:
            with self._sessions.begin() as s:
                s.execute(update(AlarmLaneTopic).where(AlarmLaneTopic.topic.in_(self._held))
                          .values(alive_until=datetime.now(UTC)))
        except Exception:
            log.exception("alarm lane: releasing the topics failed; their leases lapse in %ss", LEASE_S)


class LaneTopics:
    """Ingest side: which topics the alarm lane holds right now (read from the database)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._filters: dict[str, float] = {}  # filter -> lease end (epoch s)
        self._exact: dict[str, float] = {}
        self._cache: dict[str, float] = {}  # topic -> lease end, 0.0 when no filter matches
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        now = datetime.now(UTC)
        with self._sessions() as s:
            rows = s.execute(select(AlarmLaneTopic.topic, AlarmLaneTopic.alive_until)
                             .where(AlarmLaneTopic.alive_until > now)).all()
        filters = {t: until.timestamp() for t, until in rows}
        self._exact = {t: u for t, u in filters.items() if "+" not in t and "#" not in t}
        self._filters = {t: u for t, u in filters.items() if t not in self._exact}
        self._cache = {}

    def skip(self, topic: str) -> bool:
        """True while the lane holds this topic (called per message: a dict lookup after the first)."""
        until = self._cache.get(topic)
        if until is None:
            until = self._exact.get(topic, 0.0)
            for f, u in self._filters.items():
                if topic_matches(f, topic):
                    until = max(until, u)
            if len(self._cache) > 100_000:
                self._cache = {}
            self._cache[topic] = until
        return until > time.time()

    def start(self, interval_s: float = 2.0) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception:  # keep the last view; its leases run out by themselves
                    log.exception("alarm lane topics: refresh failed")

        self._thread = threading.Thread(target=loop, name="lane-topics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
