"""The alarm lane: life-safety devices on an MQTT session of their own, handed over to and back from
the ingest sessions through leases in the database — against a real mosquitto."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from anxin.db import AlarmLaneTopic, EventRecord
from gateway.alarm_lane import LaneTopics, lane_topics, topic_matches
from gateway.topics import compile_template
from program.web import build_app as create_app
from tests.harness import Publisher, running_gateway, wait_for
from tests.servers.mosquitto import MosquittoServer
from tests.servers.webhook import WebhookReceiver
from tests.test_alerting import PRESS, directory, settings_for

TOPIC = "zigbee2mqtt/sos-front"
LANE_FILTER = "+/sos-front"


def test_filters_for_registered_life_safety_devices() -> None:
    tpl = compile_template("application/{application_id}/device/{dev_eui}/event/up")
    assert tpl.filter_for({"dev_eui": "24e124538b223213"}) == "application/+/device/24e124538b223213/event/up"
    assert compile_template("zigbee2mqtt/{+rest}").filter_for({}) == "zigbee2mqtt/#"
    assert tpl.filter_for({"dev_eui": "a/b"}) is None and tpl.filter_for({"dev_eui": "#"}) is None
    assert topic_matches("application/+/device/24e1/event/up", "application/7/device/24e1/event/up")
    assert not topic_matches("application/+/device/24e1/event/up", "application/7/device/24e2/event/up")
    assert topic_matches("a/#", "a/b/c") and not topic_matches("a/+", "a/b/c") and not topic_matches("a/b", "a")


def test_lane_takes_alarm_topics_and_ingest_takes_them_back(tmp_path: Path, mosquitto: MosquittoServer,
                                                             webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port, duplicate_window_s=0)
    registry = directory(webhooks.url)
    registry["devices"].append({"id": "temp-1", "institution": "xm-001", "profile": "zigbee2mqtt-temp-humidity"})
    with running_gateway(settings, registry=registry) as gw, Publisher(mosquitto.port) as pub:
        assert gw.alarm_lane is not None
        # Panic button and smoke detector ride the lane; the thermometer does not. zigbee2mqtt profiles
        # accept any base_topic ("{base}/{device}"), so the lane's filter leaves the base a wildcard.
        assert lane_topics(gw.registry, gw.profiles) == {LANE_FILTER, "+/smoke-nap"}
        wait_for(lambda: gw.alarm_lane is not None and LANE_FILTER in gw.alarm_lane.held(),
                 what="lane holds the topic")
        gw.lane_topics.refresh()
        assert gw.lane_topics.skip(TOPIC) and not gw.lane_topics.skip("zigbee2mqtt/temp-1")

        health = TestClient(create_app(gw)).get("/healthz")
        assert health.status_code == 200 and health.json()["alarm_lane"] == {"connected": True, "topics": 2}

        pub.publish(TOPIC, PRESS)
        wait_for(lambda: "/police-siming" in webhooks.paths(), what="police notified through the lane")
        wait_for(lambda: gw.metrics.get("anxin_mqtt_left_to_alarm_lane_total") == 1, what="ingest left it")
        gw.drain()
        with gw.sessions() as s:
            assert s.scalar(select(func.count()).select_from(EventRecord)) == 1  # processed once, not twice

        # The lane hands its topics back: ingest processes the topic again (nothing falls between).
        gw.alarm_lane.release()
        gw.alarm_lane.stop()
        gw.lane_topics.refresh()
        assert not gw.lane_topics.skip(TOPIC)
        pub.publish(TOPIC, PRESS)
        wait_for(lambda: (gw.drain() and _events(gw) == 2), what="ingest processed the second press")
        assert gw.metrics.get("anxin_mqtt_left_to_alarm_lane_total") == 1


def test_a_lapsed_lease_is_not_honoured(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    """A lane that died without releasing: once its lease has run out, ingest no longer skips."""
    settings = settings_for(tmp_path, mosquitto.port, alarm_lane=False)
    with running_gateway(settings) as gw:
        with gw.sessions.begin() as s:
            s.add(AlarmLaneTopic(topic="zigbee2mqtt/+", alive_until=datetime.now(UTC) + timedelta(seconds=0.3)))
        lane = LaneTopics(gw.sessions)
        lane.refresh()
        assert lane.skip("zigbee2mqtt/sos-front")
        wait_for(lambda: not lane.skip("zigbee2mqtt/sos-front"), timeout=5, what="lease lapse")
        lane.refresh()
        assert not lane.skip("zigbee2mqtt/sos-front")


def _events(gw: object) -> int:
    with gw.sessions() as s:  # type: ignore[attr-defined]
        return int(s.scalar(select(func.count()).select_from(EventRecord)) or 0)
