"""People move incidents through their states over HTTP; the timeline names who did it (from the token)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from anxin.config import Settings
from program.web import build_app as create_app
from tests.harness import Publisher, running_gateway, wait_for
from tests.servers.mosquitto import MosquittoServer
from tests.servers.webhook import WebhookReceiver
from tests.test_alerting import PRESS, directory, settings_for

DESK = {"Authorization": "Bearer desk-token"}
REVIEW = {"Authorization": "Bearer review-token"}


def test_dispatch_resolve_and_review_over_the_api(tmp_path: Path, mosquitto: MosquittoServer,
                                                  webhooks: WebhookReceiver) -> None:
    settings = settings_for(tmp_path, mosquitto.port,
                            api_tokens={"保安公司值班台": "desk-token", "卫健委审核": "review-token"})
    with running_gateway(settings, registry=directory(webhooks.url)) as gw, Publisher(mosquitto.port) as pub:
        http = TestClient(create_app(gw))
        pub.publish("zigbee2mqtt/sos-front", PRESS)
        wait_for(lambda: "/police-siming" in webhooks.paths(), what="police notified")

        assert http.get("/api/v1/incidents").status_code == 401
        assert http.get("/api/v1/incidents", headers={"Authorization": "Bearer nope"}).status_code == 401
        [listed] = http.get("/api/v1/incidents", headers=DESK).json()
        assert (listed["type"], listed["state"], listed["severity"]) == ("alarm.panic", "triggered", "critical")
        incident = listed["id"]

        moved = http.post(f"/api/v1/incidents/{incident}/transition", headers=DESK,
                          json={"to": "dispatched", "note": "已派巡逻员 patrol sent"})
        assert moved.status_code == 200 and moved.json()["state"] == "dispatched"
        assert moved.json()["acknowledged_at"] is not None  # dispatching acknowledges too

        no_code = http.post(f"/api/v1/incidents/{incident}/transition", headers=DESK, json={"to": "resolved"})
        assert no_code.status_code == 409 and "closure code" in no_code.json()["detail"]
        early = http.post(f"/api/v1/incidents/{incident}/transition", headers=REVIEW, json={"to": "reviewed"})
        assert early.status_code == 409
        done = http.post(f"/api/v1/incidents/{incident}/transition", headers=DESK,
                         json={"to": "resolved", "closure_code": "false_alarm", "note": "儿童误触 pressed by a child"})
        assert done.status_code == 200 and done.json()["closure_code"] == "false_alarm"
        assert http.post(f"/api/v1/incidents/{incident}/transition", headers=REVIEW,
                         json={"to": "reviewed"}).status_code == 200

        assert http.get("/api/v1/incidents", headers=DESK).json() == []  # nothing open
        detail = http.get(f"/api/v1/incidents/{incident}", headers=REVIEW).json()
        people = [(e["action"], e["actor"], e["channel"]) for e in detail["timeline"] if e["actor"] != "system"]
        assert people == [("dispatched", "保安公司值班台", "api"), ("resolved", "保安公司值班台", "api"),
                          ("reviewed", "卫健委审核", "api")]
        resolved = next(e for e in detail["timeline"] if e["action"] == "resolved")
        assert resolved["detail"] == {"closure_code": "false_alarm", "note": "儿童误触 pressed by a child"}
        assert http.get("/api/v1/incidents/99999", headers=DESK).status_code == 404


def test_api_tokens_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANXIN_API_TOKENS", "张工:t1, 值班室:t2")
    assert Settings().api_tokens == {"张工": "t1", "值班室": "t2"}
    monkeypatch.setenv("ANXIN_API_TOKENS", "no-name-token")
    with pytest.raises(ValueError, match="name:token"):
        Settings()
