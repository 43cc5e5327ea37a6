"""The commission's overview in Debian's chromium: commission-siming logs in, sees 思明区 with inst-a's figures
and the three charts drawn (canvas), never inst-b; drills down to inst-a's incidents and reads a timeline;
the quarter selector moves to another quarter. At 1920 px and 390 px, with no page wider than the screen
and no script error (the CSP forbids inline scripts: a violation would show here)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, ViewportSize
from sqlalchemy import update

from alerting.drills import current_quarter
from alerting.models import DrillWindow
from api.routes.overview import shift_quarter
from tests.support.browser import DESKTOP, PHONE, browser_page, live_console, login, shot
from tests.support.overview_data import act, drill_window
from tests.support.world import World, api_world

YEAR, Q = current_quarter()
QUARTER = f"{YEAR}Q{Q}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # No heartbeat detector round (an hour away): the offline event stands for the device saying so itself.
    with api_world(tmp_path_factory.mktemp("overview-browser"), thresholds_interval_s=3600) as world:
        panic = world.open_incident("sos-a", "inst-a", "alarm.panic")
        act(world, "contractor-a", panic, "acknowledged")
        act(world, "contractor-a", panic, "resolved", "real")
        smoke = world.open_incident("smoke-a", "inst-a", "alarm.smoke")
        act(world, "contractor-a", smoke, "resolved", "false_alarm")
        world.open_incident("sos-a", "inst-a", "alarm.panic")  # open now
        world.open_incident("air-a", "inst-a", "device.offline")
        now = datetime.now(UTC)
        window = drill_window(world, "inst-a", now - timedelta(minutes=1), now + timedelta(hours=1))
        world.open_incident("smoke-a", "inst-a", "alarm.smoke")  # inside the drill window
        with world.system.sessions.begin() as s:  # the drill is over
            s.execute(update(DrillWindow).where(DrillWindow.id == window).values(ends_at=datetime.now(UTC)))
        world.open_incident("sos-b", "inst-b", "alarm.panic")  # not the commission's district
        yield world


def watch_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


def fits(page: Page, viewport: ViewportSize) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"the page is {width} px wide on a {viewport['width']} px screen"


@pytest.mark.parametrize(("viewport", "name"), [(DESKTOP, "desktop"), (PHONE, "phone")])
def test_commission_overview_charts_and_drill_down(world: World, viewport: ViewportSize, name: str) -> None:
    with live_console(world) as base, browser_page(viewport=viewport) as page:
        errors = watch_errors(page)
        login(page, base, "commission-siming")
        assert page.url.split("?")[0].endswith("/console/overview")
        for chart in ("chart-types", "chart-closures", "chart-institutions"):
            page.wait_for_selector(f"#{chart} canvas")  # ECharts drew it
        assert page.get_by_test_id("total-alarms").inner_text() == "4"  # 2 panics, smoke, offline; drill apart
        assert page.get_by_test_id("total-offline").inner_text() == "1"
        district = page.locator("section.ov-district")
        assert district.count() == 1 and "思明区" in district.inner_text()
        assert "贝贝" not in page.content() and "湖里" not in page.content()
        page.wait_for_timeout(300)  # let the charts finish laying out their labels for the picture
        fits(page, viewport)
        shot(page, f"overview-{name}")

        page.click("a[href^='/console/overview/institutions/inst-a']")
        page.wait_for_url("**/console/overview/institutions/inst-a*")
        incidents = page.locator("article.ov-incident")
        assert incidents.count() == 5
        assert incidents.locator(".badge.drill").count() == 1
        resolved = page.locator("article.ov-incident", has_text="一键报警").filter(has_text="真实警情")
        resolved.locator("summary").click()
        timeline = resolved.locator(".ov-timeline")
        assert "已确认" in timeline.inner_text() and "contractor-a" in timeline.inner_text()
        assert "real 已处理 / handled" in timeline.inner_text()
        link = resolved.locator("a.ov-incident-title").get_attribute("href") or ""
        assert link.startswith("/console/incidents/")
        fits(page, viewport)
        shot(page, f"overview-institution-{name}")

        previous = "{}Q{}".format(*shift_quarter(YEAR, Q, -1))
        page.goto(f"{base}/console/overview")
        page.select_option("#quarter-select", previous)
        page.wait_for_url(f"**quarter={previous}")
        assert page.get_by_test_id("total-alarms").inner_text() == "0"
        assert page.get_by_test_id("total-median").inner_text() == "—"
        assert not errors, errors


def test_english_overview_names_everything_in_english(world: World) -> None:
    with live_console(world) as base, browser_page(viewport=DESKTOP) as page:
        login(page, base, "commission-siming")
        page.click("[data-testid=lang-switch]")
        page.wait_for_selector("#chart-types canvas")
        text = page.locator("main").inner_text()
        assert "Little Sun Nursery" in text and "Median time to acknowledge" in text
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in text.replace("思明区", "")), "untranslated text"
        shot(page, "overview-desktop-en")


def test_admin_overview_has_both_districts(world: World) -> None:
    with live_console(world) as base, browser_page(viewport=DESKTOP) as page:
        login(page, base, "admin")
        page.goto(f"{base}/console/overview")
        page.wait_for_selector("#chart-institutions canvas")
        assert page.locator("section.ov-district").count() == 2
        assert page.get_by_test_id("total-alarms").inner_text() == "5"  # inst-b's panic too
        fits(page, DESKTOP)
        shot(page, "overview-admin-desktop")
