"""Two gateway instances sharing PostgreSQL: the same alarm seen by both opens one incident, and each
escalation step is sent by exactly one of them (row claims with SKIP LOCKED)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, select, update

from alerting.channels.webhook import WebhookChannel
from alerting.engine import AlertingEngine, AlertingOptions
from alerting.models import Contact, Delivery, DrillWindow, EscalationStep, Incident, TimelineEntry
from alerting.routing import load_routing
from anxin.db import Device, Institution, init_db, make_engine
from anxin.metrics import Metrics
from anxin.model import Event, EventState, EventType
from program.registry_file import import_registry
from tests.harness import Publisher, running_gateway, wait_for
from tests.servers.mosquitto import MosquittoServer
from tests.servers.postgres import PostgresServer
from tests.servers.webhook import WebhookReceiver
from tests.test_alerting import PRESS, SMOKE, directory, incidents, settings_for


def test_two_instances_one_incident_each_step_once(tmp_path: Path, postgres: PostgresServer,
                                                   webhooks: WebhookReceiver) -> None:
    engine = make_engine(postgres.url)
    sessions = init_db(engine)
    with sessions.begin() as s:  # the session-scoped server may hold rows of another test
        for table in (Delivery, EscalationStep, TimelineEntry, Incident, DrillWindow, Contact, Device, Institution):
            s.execute(delete(table))
    import_registry(sessions, directory(webhooks.url))
    routing = load_routing()
    engines = [AlertingEngine(sessions, routing, [WebhookChannel()], Metrics(), AlertingOptions(instance_id=i))
               for i in ("gw-a", "gw-b")]
    event = Event("sos-front", EventType.PANIC, EventState.ACTIVE, datetime.now(UTC), "xm-001")
    barrier = threading.Barrier(2)
    ids: list[int | None] = []

    def both(e: AlertingEngine) -> None:
        barrier.wait()
        ids.append(e.handle_event(1, event))

    threads = [threading.Thread(target=both, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ids[0] == ids[1] and ids[0] is not None
    with sessions() as s:
        [incident] = s.scalars(select(Incident)).all()
        assert incident.event_count == 2

    # The instance that opened the incident claimed step 0 with it and sends it at once.
    wait_for(lambda: sorted(webhooks.paths()) == ["/contractor", "/police-siming", "/staff"], what="step 0 sent")
    with sessions.begin() as s:  # bring step 1 (due after 60 s) forward: both instances race for it
        s.execute(update(EscalationStep).where(EscalationStep.step_no == 1).values(due_at=datetime.now(UTC)))
    sent: list[int] = []
    barrier = threading.Barrier(2)

    def send(e: AlertingEngine) -> None:
        barrier.wait()
        sent.append(e.run_due_steps())

    threads = [threading.Thread(target=send, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(sent) == [0, 1]  # step 1 is due; exactly one instance sent it
    assert sorted(webhooks.paths()) == ["/contractor", "/contractor", "/police-siming", "/police-siming", "/staff",
                                        "/staff"]
    for e in engines:
        e.stop()
    engine.dispose()


def test_panic_press_during_a_postgresql_outage_is_delivered_after_it(tmp_path: Path, mosquitto: MosquittoServer,
                                                                      webhooks: WebhookReceiver) -> None:
    """PostgreSQL goes down with connections in the pool; a press during the outage waits (its ack too)
    and reaches the police once the database is back — no connection check per checkout needed."""
    with PostgresServer() as pg:
        settings = settings_for(tmp_path, mosquitto.port, database_url=pg.url)
        with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
            pub.publish("zigbee2mqtt/sos-front", PRESS)
            wait_for(lambda: "/police-siming" in webhooks.paths(), what="first press delivered")
            pg.pause()
            pub.publish("zigbee2mqtt/smoke-nap", SMOKE)
            wait_for(lambda: gw.metrics.get("anxin_db_write_retries_total") >= 1, what="writes retried")
            assert "/fire-siming" not in webhooks.paths()
            pg.resume()
            wait_for(lambda: "/fire-siming" in webhooks.paths(), timeout=30, what="smoke delivered after the outage")
            assert gw.drain(20)
            assert sorted(i.type for i in incidents(gw)) == ["alarm.panic", "alarm.smoke"]
