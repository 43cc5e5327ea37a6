"""The institution's staff on a phone (390 px) and the control-room screen (1920 px), in Debian's
chromium against the real system: a panic press published over MQTT (mosquitto), its notification
received by a real webhook receiver, the acknowledge link taken out of that message; readings in the
SQLite telemetry store the gateway writes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Page, expect
from sqlalchemy import select

from alerting.models import Contact, DrillWindow, Incident, TimelineEntry
from anxin.db import Device
from anxin.model import Reading
from gateway.sinks.sqlite_sink import SqliteSink
from tests.harness import Publisher, wait_for
from tests.servers.mosquitto import MosquittoServer
from tests.servers.webhook import WebhookReceiver
from tests.support.browser import DESKTOP, PHONE, SCREENSHOTS, browser_page, live_console, login, shot
from tests.support.world import World, api_world

PRESS = b'{"action":"emergency","battery":87,"linkquality":80}'
SHANGHAI_OFFSET = timedelta(hours=8)


def state_of(world: World, incident_id: int) -> str:
    with world.system.sessions() as s:
        incident = s.get(Incident, incident_id)
        assert incident is not None
        return str(incident.state)


def timeline(world: World, incident_id: int) -> list[tuple[str, str, dict[str, object]]]:
    with world.system.sessions() as s:
        return [(e.action, e.actor, e.detail) for e in s.scalars(
            select(TimelineEntry).where(TimelineEntry.incident_id == incident_id).order_by(TimelineEntry.id))]


def add_readings(world: World) -> None:
    """A day of CO2 in 一班 (air-a), rising above the rule's limit at the end; a temperature for the table."""
    now = datetime.now(UTC)
    sink = SqliteSink(world.system.settings.sqlite_telemetry_path)
    try:
        sink.write([Reading("air-a", "co2", 600 + 4 * n, now - timedelta(minutes=10 * (144 - n)), "inst-a")
                    for n in range(145)])
        sink.write([Reading("air-a", "temperature", 22.5, now, "inst-a"),
                    Reading("air-a", "humidity", 48, now, "inst-a")])
    finally:
        sink.close()


def no_overflow(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"] if page.viewport_size else True, f"page is {width} px wide"


def test_director_acknowledges_from_the_link_and_in_two_taps_registers_a_drill_and_sees_a_chart(
        tmp_path: Path, mosquitto: MosquittoServer, webhooks: WebhookReceiver) -> None:
    with api_world(tmp_path, webhook_url=webhooks.url, mqtt_port=mosquitto.port) as world, \
            live_console(world) as base, Publisher(mosquitto.port) as pub:
        add_readings(world)
        pub.publish("zigbee2mqtt/sos-a", PRESS)
        wait_for(lambda: "/contractor-a" in webhooks.paths(), what="contractor notified")
        message = next(r for r in webhooks.received if r.path == "/contractor-a").json()
        ack_url = message["ack_url"]
        assert ack_url in message["text"]  # the link people tap is the one in the message
        first = int(message["incident_id"])
        path = ack_url.removeprefix(world.system.settings.public_url)

        with browser_page(viewport=PHONE) as page:
            # The acknowledge link, as the phone opens it: no login; opening it changes nothing.
            page.goto(f"{base}{path}")
            expect(page.get_by_test_id("ack-state")).to_contain_text("待处理")
            expect(page.locator("h1")).to_have_text("一键报警")
            before = timeline(world, first)
            page.reload()
            assert state_of(world, first) == "triggered" and timeline(world, first) == before
            no_overflow(page)
            shot(page, "ack-phone-before")
            page.get_by_role("button", name="确认收到 Acknowledge").click()
            expect(page.get_by_role("status")).to_contain_text("已确认收到")
            expect(page.get_by_test_id("ack-state")).to_contain_text("已确认")
            expect(page.get_by_test_id("handled")).to_contain_text("思明安保值班")
            assert state_of(world, first) == "acknowledged"
            assert ("acknowledged", "contact:contractor-a", {}) in timeline(world, first)
            page.fill("input[name=guard]", "王保安")
            page.get_by_role("button", name="已派人 Dispatched").click()
            expect(page.get_by_test_id("ack-state")).to_contain_text("已出警")
            expect(page.get_by_test_id("handled")).to_contain_text("王保安")
            assert state_of(world, first) == "dispatched"
            no_overflow(page)
            shot(page, "ack-phone-after")

            # The institution page: an open alarm acknowledged in two taps.
            second = world.open_incident("smoke-a", "inst-a", "alarm.smoke")
            login(page, base, "director-a")
            assert page.url.endswith("/console/institution")
            item = page.locator(f"li[data-incident='{second}']")
            expect(item).to_contain_text("烟感火警")
            expect(page.locator(f"li[data-incident='{first}']")).to_contain_text("已出警")
            expect(page.locator("#env-list")).to_contain_text("二氧化碳")
            expect(page.locator("#device-list li[data-device='sos-a']")).to_contain_text("87%")  # battery of the press
            expect(page.locator("#chart canvas").first).to_be_visible()
            assert int(page.locator("#chart").get_attribute("data-points") or 0) > 100
            no_overflow(page)
            shot(page, "institution-phone")
            item.get_by_test_id("ack").click()  # tap 1
            assert state_of(world, second) == "triggered"  # the first tap only asks
            item.get_by_test_id("ack-confirm").click()  # tap 2
            wait_for(lambda: state_of(world, second) == "acknowledged", what="acknowledged from the page")
            assert any(a == "acknowledged" and actor == "director-a" for a, actor, _ in timeline(world, second))
            expect(item).not_to_contain_text("待处理")
            expect(item.get_by_test_id("ack")).to_have_count(0)

            # A drill window, entered in Beijing time, stored in UTC.
            start = (datetime.now(UTC) + SHANGHAI_OFFSET + timedelta(days=1)).replace(hour=10, minute=0, second=0,
                                                                                     microsecond=0, tzinfo=None)
            form = page.get_by_test_id("drill-form")
            form.locator("input[name=starts_at]").fill(start.strftime("%Y-%m-%dT%H:%M"))
            form.locator("input[name=ends_at]").fill((start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
            form.locator("input[name=note]").fill("秋季消防演练")
            form.get_by_role("button").click()
            expect(page.locator("#drill-msg")).to_contain_text("已登记")
            expect(page.locator("#drill-list")).to_contain_text("秋季消防演练")
            expect(page.locator("#drill-list")).to_contain_text(start.strftime("%Y-%m-%d %H:%M"))
            with world.system.sessions() as s:
                [window] = s.scalars(select(DrillWindow))
            assert window.starts_at == (start - SHANGHAI_OFFSET).replace(tzinfo=UTC)
            page.locator("#drills").screenshot(path=str(SCREENSHOTS / "institution-drill-form-phone.png"))

            # A wrong window is refused with the reason.
            form.locator("input[name=ends_at]").fill((start - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
            form.get_by_role("button").click()
            expect(page.locator("#drill-msg")).to_contain_text("结束时间须晚于开始时间")

            # Device test press: a short test window; the press reaches the drill receiver only, and its
            # acknowledgement verifies the device.
            resolved = world.client("director-a").post(f"/api/v1/incidents/{first}/transition", json={
                "to": "resolved", "closure_code": "real", "note": "处置完毕"})
            assert resolved.status_code == 200, resolved.text
            with world.system.sessions.begin() as s:
                s.add(Contact(id="drill-a", role="drill", name="A 演练接收人", institution_id="inst-a",
                              webhook_url=f"{webhooks.url}/drill-a"))
            page.reload()
            device = page.locator("#device-list li[data-device='sos-a']")
            expect(device).to_contain_text("未验证")
            expect(page.locator("#receivers-note")).to_contain_text("1 个演练接收人")
            device.get_by_test_id("test").click()
            device.get_by_test_id("test-confirm").click()
            banner = page.locator("#drill-banner")
            expect(banner).to_contain_text("演练进行中")
            expect(banner).to_contain_text("设备测试 device test: sos-a")
            no_overflow(page)
            page.locator("#drill-banner").screenshot(path=str(SCREENSHOTS / "institution-device-test-phone.png"))
            seen = len(webhooks.received)
            pub.publish("zigbee2mqtt/sos-a", PRESS)
            wait_for(lambda: "/drill-a" in webhooks.paths(), what="drill receiver notified")
            test_message = next(r for r in webhooks.received if r.path == "/drill-a").json()
            third = int(test_message["incident_id"])
            assert test_message["drill"] is True and third not in (first, second)
            assert world.system.alerting is not None and world.system.alerting.wait_idle(10)
            assert {r.path for r in webhooks.received[seen:]} == {"/drill-a"}  # never police, fire or contractor
            page.goto(test_message["ack_url"].replace(world.system.settings.public_url, base))
            page.get_by_role("button", name="确认收到 Acknowledge").click()
            expect(page.get_by_test_id("ack-state")).to_contain_text("已确认")
            with world.system.sessions() as s:
                verified = s.get(Device, "sos-a")
                assert verified is not None and verified.verification == "verified"
            page.goto(f"{base}/console/institution")
            expect(device).to_contain_text("已验证")
            page.locator("#drill-banner").get_by_test_id("end-drill").click()
            page.locator("#drill-banner").get_by_test_id("end-drill-confirm").click()
            expect(banner).to_be_hidden()
            with world.system.sessions() as s:
                assert all(w.ends_at <= datetime.now(UTC) for w in s.scalars(select(DrillWindow))
                           if "device test" in w.note)

        with browser_page(viewport=DESKTOP) as page:
            login(page, base, "director-a")
            expect(page.locator(f"li[data-incident='{second}']")).to_contain_text("已确认")
            expect(page.locator("#chart canvas").first).to_be_visible()
            page.get_by_test_id("chart-hours").select_option("168")
            expect(page.locator("#chart-note")).to_contain_text("北京时间")
            no_overflow(page)
            shot(page, "institution-desktop")
            assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", page.locator("#device-list").inner_text())
            page.click("[data-testid=lang-switch]")
            expect(page.locator("#alarms h2")).to_have_text("Open incidents")
            expect(page.locator(f"li[data-incident='{second}']")).to_contain_text("Smoke / fire alarm")
            expect(page.locator("#env-list")).to_contain_text("CO₂")
            shot(page, "institution-desktop-en")
