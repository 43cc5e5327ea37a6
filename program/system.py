"""The composition root: the one place that builds ingest (gateway/), alerting (alerting/) and, through
api/main.py, the HTTP API from Settings and wires them together. Nothing below it knows the others."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from alerting.channels import build_channels
from alerting.engine import AlertingEngine, AlertingOptions
from alerting.leases import RulesLease
from alerting.routing import load_routing
from alerting.thresholds import (
    OfflineDetector,
    SqliteWindowSource,
    ThresholdEvaluator,
    influx_last_seen,
    load_thresholds,
    sqlite_last_seen,
    window_source,
)
from anxin.config import Settings
from anxin.metrics import Metrics
from anxin.model import Event
from gateway.service import Gateway
from gateway.sinks import TelemetrySink


def make_alerting(settings: Settings, sessions: sessionmaker[Session], metrics: Metrics) -> AlertingEngine:
    options = AlertingOptions(instance_id=settings.alerting_instance_id, ack_secret=settings.alerting_secret.encode(),
                              ack_ttl_s=settings.ack_link_ttl_s,
                              public_url=settings.public_url.rstrip("/"), tick_s=settings.alerting_tick_s,
                              delivery_attempts=settings.alerting_delivery_attempts,
                              retry_backoff_s=settings.alerting_retry_backoff_s,
                              voice_severities=tuple(settings.voice_severities),
                              contact_rate_per_hour=settings.alerting_contact_rate_per_hour,
                              life_safety_retry_s=settings.life_safety_retry_s,
                              routine_retry_s=settings.alerting_routine_retry_s,
                              claim_lease_s=settings.alerting_claim_lease_s)
    return AlertingEngine(sessions, load_routing(settings.alerting_routes), build_channels(settings), metrics,
                          options)


class Anxin(Gateway):
    """Ingest plus, when enabled, alerting on its events and the rules (thresholds, offline) on its
    readings. The API is built on top of this object (api/main.py ``create_app``)."""

    def __init__(self, settings: Settings, *, sink: TelemetrySink | None = None,
                 partition: tuple[int, int] | None = None) -> None:
        super().__init__(settings, sink=sink, partition=partition)
        self.alerting: AlertingEngine | None = None
        self.thresholds: ThresholdEvaluator | None = None
        if not settings.alerting_enabled:
            return
        self.alerting = make_alerting(settings, self.sessions, self.metrics)
        self.events.listeners.append(self.alerting.on_events)
        source = window_source(settings)
        last_seen = (functools.partial(sqlite_last_seen, source) if isinstance(source, SqliteWindowSource)
                     else functools.partial(influx_last_seen, source))
        offline = OfflineDetector(last_seen, self._heartbeat_devices, self._emit_rule_events,
                                  factor=settings.offline_factor)
        # One instance evaluates the rules (a lease in the database); it lapses after a few rounds.
        lease = RulesLease(self.sessions, settings.alerting_instance_id, max(10.0, 3 * settings.thresholds_interval_s),
                           on_take=lambda: self.events.prime(self.sessions))
        self.thresholds = ThresholdEvaluator(load_thresholds(settings.thresholds), source, self._device_info,
                                             self._emit_rule_events, interval_s=settings.thresholds_interval_s,
                                             offline=offline, leader=lease)

    def start_consumers(self) -> None:
        if self.alerting is not None:
            self.alerting.start()
        if self.thresholds is not None:
            self.thresholds.start()

    def stop_consumers(self) -> None:
        if self.thresholds is not None:
            self.thresholds.stop()
        if self.alerting is not None:
            self.alerting.stop()

    def drain(self, timeout: float = 30.0) -> bool:
        done = super().drain(timeout)
        if self.alerting is not None:
            done = done and self.alerting.wait_idle(timeout)
        return done

    def _heartbeat_devices(self) -> dict[str, tuple[str | None, int]]:
        out: dict[str, tuple[str | None, int]] = {}
        for device_id, info in self.registry.items():
            profile = self.profiles.by_name.get(info.profile or "")
            if profile is not None and profile.spec.heartbeat_interval_s:
                out[device_id] = (info.institution_id, profile.spec.heartbeat_interval_s)
        return out

    def _device_info(self, device_id: str) -> tuple[str | None, str | None, str]:
        info = self.registry.lookup(device_id)
        if info is None:
            return None, None, ""
        profile = self.profiles.by_name.get(info.profile or "")
        return info.institution_id, profile.spec.kind if profile else None, info.room

    def _emit_rule_events(self, events: Sequence[Event]) -> None:
        self.events.persist(events, "rules:thresholds", datetime.now(UTC), lambda: None)
