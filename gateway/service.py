"""The ingest service built from Settings: stores, pipeline, MQTT sources. It knows nothing of alerting
or HTTP: the composition root (program/system.py) adds those on top."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from anxin.config import Settings
from anxin.db import init_db, make_engine
from anxin.metrics import MQTT_SUBSCRIBED, Metrics
from gateway.alarm_lane import AlarmLane, LaneTopics
from gateway.db_writer import DbWriter
from gateway.dead_letters import DeadLetterStore
from gateway.event_store import EventStore
from gateway.mqtt_source import MqttSource
from gateway.pipeline import Pipeline
from gateway.profiles import ProfileSet, load_profiles
from gateway.registry import Registry
from gateway.sinks import TelemetrySink
from gateway.sinks.influx import InfluxSink
from gateway.telemetry_batcher import TelemetryBatcher
from gateway.workers import WorkerSupervisor

log = logging.getLogger(__name__)


def make_sink(settings: Settings) -> TelemetrySink:
    if settings.telemetry_sink == "sqlite":
        from gateway.sinks.sqlite_sink import SqliteSink

        settings.sqlite_telemetry_path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteSink(settings.sqlite_telemetry_path)

    return InfluxSink(
        settings.influx_url,
        settings.influx_database,
        username=settings.influx_username,
        password=settings.influx_password,
        retention_policy=settings.influx_retention_policy,
        spool_dir=settings.spool_dir,
    )


class Gateway:
    """The running ingest service. ``start()`` connects; ``stop()`` drains and closes."""

    def __init__(self, settings: Settings, *, sink: TelemetrySink | None = None,
                 partition: tuple[int, int] | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.engine = make_engine(settings.database_url)
        self.sessions = init_db(self.engine)
        self.profiles = ProfileSet(load_profiles(settings.profiles_dir))
        self.registry = Registry(self.sessions)
        self.registry.refresh()
        self.writer = DbWriter(self.sessions, self.metrics, Path(settings.spool_dir) / "db-rejected.jsonl")
        self.events = EventStore(self.writer, self.metrics)
        self.events.prime(self.sessions)
        self.dead_letters = DeadLetterStore(self.writer, self.metrics)
        self.sink = sink or make_sink(settings)
        self.telemetry = TelemetryBatcher(
            self.sink, self.metrics, batch_size=settings.batch_size, flush_interval_s=settings.flush_interval_s
        )
        self.pipeline = Pipeline(self.profiles, self.registry, self.events, self.telemetry, self.dead_letters,
                                 self.metrics, duplicate_window_s=settings.duplicate_window_s,
                                 max_payload_bytes=settings.mqtt_max_payload_bytes)
        self.lane_topics = LaneTopics(self.sessions)
        self.lane_topics.refresh()
        self.mqtt = self._mqtt_source(settings.mqtt_client_id, self.profiles.subscriptions(),
                                      settings.mqtt_shared_group,
                                      skip=self.lane_topics.skip if settings.alarm_lane else None,
                                      partition=partition)
        self.alarm_lane: AlarmLane | None = None
        if settings.alarm_lane and settings.alerting_enabled:
            group = settings.mqtt_shared_group
            lane_source = self._mqtt_source(f"{settings.mqtt_client_id}-alarms", [], f"{group}-alarms" if group else "",
                                            name="mqtt-alarm-lane")
            self.alarm_lane = AlarmLane(lane_source, self.registry, self.profiles, self.sessions,
                                        on_renew=self.lane_topics.refresh)
        self.workers: WorkerSupervisor | None = None  # set by the CLI when ingest runs in worker processes
        self.metrics.gauge("anxin_telemetry_pending", "readings waiting for the sink",
                           lambda: float(self.telemetry.pending()))
        self.metrics.gauge("anxin_db_writes_pending", "events/dead letters waiting for the database",
                           lambda: float(self.writer.pending()))
        self.metrics.gauge("anxin_registry_devices", "devices in the registry", lambda: float(len(self.registry)))
        if isinstance(self.sink, InfluxSink):  # InfluxDB unreachable: what waits on disk for it
            influx = self.sink
            self.metrics.gauge("anxin_spool_bytes", "readings spooled on disk while InfluxDB is unavailable",
                               lambda: float(influx.spool_bytes))

    def _mqtt_source(self, client_id: str, subscriptions: list[str], shared_group: str, **kwargs: Any) -> MqttSource:
        s = self.settings
        return MqttSource(self.pipeline, self.metrics, host=s.mqtt_host, port=s.mqtt_port, client_id=client_id,
                          subscriptions=subscriptions, protocol=s.mqtt_protocol, shared_group=shared_group,
                          username=s.mqtt_username, password=s.mqtt_password,
                          receive_maximum=s.mqtt_receive_maximum, session_expiry_s=s.mqtt_session_expiry_s,
                          **kwargs)

    def start(self, *, mqtt: bool = True) -> None:
        self.start_consumers()
        self.writer.start()
        self.telemetry.start()
        self.registry.start()
        if self.alarm_lane is not None:  # before ingest, so it holds its topics first
            self.alarm_lane.start()
        self.lane_topics.start()
        if mqtt:
            self.mqtt.start()
            self.metrics.gauge(MQTT_SUBSCRIBED, "1 while the ingest session holds its subscriptions",
                               lambda: float(self.mqtt.subscribed.is_set()))
        log.info("gateway started: %d profiles, %d devices, subscriptions %s", len(self.profiles.by_name),
                 len(self.registry), self.profiles.subscriptions())

    def start_consumers(self) -> None:
        """What the composition root adds on top of ingest starts here, before any message arrives."""

    def stop(self) -> None:
        # Flush while still connected so the final acks reach the broker; anything later is redelivered.
        self.registry.stop()
        self.lane_topics.stop()
        if self.alarm_lane is not None:  # its leases lapse: a quick restart takes its topics back
            self.alarm_lane.stop()
        self.telemetry.stop()
        self.writer.stop()
        self.mqtt.stop()
        self.stop_consumers()
        self.sink.close()
        self.engine.dispose()

    def stop_consumers(self) -> None:
        """What the composition root adds on top of ingest stops here: after the last event is stored,
        before the database closes."""

    def readiness(self) -> dict[str, bool]:
        """Ready means subscribed, not just connected: each part that carries messages, and whether it
        holds its subscriptions now (this process's ingest session or every worker's, the alarm lane)."""
        parts: dict[str, bool] = {}
        if self.workers is None:
            parts["ingest"] = self.mqtt.subscribed.is_set()
        else:
            parts.update({f"worker-{i}": ok for i, ok in self.workers.subscribed().items()})
        lane = self.alarm_lane
        if lane is not None:
            parts["alarm_lane"] = (lane.ready.is_set() and lane.source.connected.is_set()
                                   and (not lane.held() or lane.source.subscribed.is_set()))
        return parts

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until everything received so far is durable (tests, shutdown)."""
        return self.telemetry.flush(timeout) and self.writer.wait_idle(timeout)
