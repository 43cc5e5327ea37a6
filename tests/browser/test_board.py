"""The contractor's board in Debian's chromium (issue 8): contractor-a logs in, a panic press published
over MQTT (a real mosquitto) appears on the board with the visible alarm cue, contractor-a acknowledges it
and dispatches a guard from the incident page, and the timeline updates live; inst-b's alarm never shows.
Screenshots of the board, the incident page and the device page at 1920 px and 390 px."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.harness import Publisher
from tests.servers.mosquitto import MosquittoServer
from tests.servers.webhook import WebhookReceiver
from tests.support.browser import DESKTOP, PHONE, browser_page, live_console, login, shot
from tests.support.world import api_world
from tests.test_alerting import PRESS

TIMEOUT = 30_000  # ms: generous, never a claim about speed


def wait_connected(page: Page) -> None:
    expect(page.get_by_test_id("feed-state")).to_have_attribute("data-state", "connected", timeout=TIMEOUT)


def test_contractor_sees_a_press_arrive_acknowledges_and_dispatches(tmp_path: Path, mosquitto: MosquittoServer,
                                                                    webhooks: WebhookReceiver) -> None:
    with api_world(tmp_path, mqtt_port=mosquitto.port, webhook_url=webhooks.url) as world, \
            live_console(world) as base, Publisher(mosquitto.port) as pub:
        other = world.open_incident("sos-b", "inst-b")  # inst-b's alarm: never on contractor-a's board
        world.open_incident("smoke-a", "inst-a", "fault.battery_low")  # an older routine incident
        with browser_page(viewport=DESKTOP) as page:
            login(page, base, "contractor-a")
            assert page.url.endswith("/console/board")
            wait_connected(page)
            board = page.get_by_test_id("board")
            expect(board.locator("[data-testid=incident]")).to_have_count(1, timeout=TIMEOUT)
            page.get_by_test_id("sound-toggle").click()  # a click is what lets the browser play the beep
            expect(page.get_by_test_id("sound-toggle")).to_have_attribute("aria-pressed", "true")

            pub.publish("zigbee2mqtt/sos-a", PRESS)
            card = board.locator("[data-testid=incident].life")
            expect(card).to_have_count(1, timeout=TIMEOUT)
            expect(card).to_contain_text("一键报警")
            expect(card).to_contain_text("小太阳托育园")
            expect(card).to_contain_text("前台")
            expect(page.get_by_test_id("alarm-banner")).to_be_visible()
            assert "紧急报警" in page.title()
            # life-safety first: the new panic press is above the older battery incident
            expect(board.locator("[data-testid=incident]").first).to_have_class("inc life fresh")
            # who was notified, and that it reached them
            expect(card.locator(".chip[data-delivered=true]").filter(has_text="思明公安")).to_have_count(
                1, timeout=TIMEOUT)
            assert board.locator(f"[data-institution=inst-b], [data-id='{other}']").count() == 0
            shot(page, "board-desktop")
            page.get_by_test_id("alarm-dismiss").click()
            expect(page.get_by_test_id("alarm-banner")).to_be_hidden()

            card.locator("a.inc-type").click()
            page.wait_for_url("**/console/incidents/*")
            incident_id = int(page.url.rstrip("/").split("/")[-1])
            wait_connected(page)
            timeline = page.get_by_test_id("timeline")
            expect(timeline.locator("[data-action=opened]")).to_have_count(1)
            page.get_by_test_id("ack").click()
            expect(timeline.locator("[data-action=acknowledged]")).to_contain_text("contractor-a")
            expect(page.get_by_test_id("state")).to_have_attribute("data-state", "acknowledged")
            dispatch = page.get_by_test_id("dispatch-form")
            dispatch.locator("input[name=guard]").fill("王师傅")
            dispatch.locator("button").click()
            expect(timeline.locator("[data-action=dispatched]")).to_contain_text("王师傅")
            expect(page.get_by_test_id("state")).to_have_attribute("data-state", "dispatched")
            # a change made elsewhere arrives through the live feed, without a reload: the button is pressed
            # again (a new event on this incident) and a colleague adds a note over the API
            pub.publish("zigbee2mqtt/sos-a", PRESS)
            expect(timeline.locator("[data-action=event]")).to_have_count(1, timeout=TIMEOUT)
            r = world.client("admin").post(f"/api/v1/incidents/{incident_id}/notes", json={"text": "已电话联系园长"})
            assert r.status_code == 200, r.text
            expect(timeline.locator("[data-action=note]")).to_contain_text("已电话联系园长", timeout=TIMEOUT)
            expect(page.get_by_test_id("notifications").locator("tr[data-delivered=true]")).not_to_have_count(0)
            shot(page, "incident-desktop")

            page.goto(f"{base}/console/incidents/{other}")
            assert page.get_by_text("找不到").count() >= 1  # outside the scope: 404

            page.goto(f"{base}/console/devices")
            expect(page.get_by_test_id("devices").locator("tr[data-device]")).to_have_count(3)
            assert page.locator("tr[data-device=sos-b]").count() == 0
            shot(page, "devices-desktop")

        with browser_page(viewport=PHONE) as phone:
            login(phone, base, "contractor-a")
            wait_connected(phone)
            expect(phone.get_by_test_id("board").locator("[data-testid=incident]")).to_have_count(2)
            shot(phone, "board-phone")
            phone.goto(f"{base}/console/incidents/{incident_id}")
            expect(phone.get_by_test_id("timeline").locator("[data-action=dispatched]")).to_have_count(1)
            shot(phone, "incident-phone")
            phone.goto(f"{base}/console/devices")
            shot(phone, "devices-phone")
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling

        with browser_page(viewport=PHONE) as review:  # the commission reads, and has no buttons
            login(review, base, "commission-siming")
            review.goto(f"{base}/console/incidents/{incident_id}")
            expect(review.get_by_test_id("timeline").locator("[data-action=dispatched]")).to_have_count(1)
            assert review.get_by_test_id("actions").count() == 0
            expect(review.get_by_test_id("read-only")).to_be_visible()
