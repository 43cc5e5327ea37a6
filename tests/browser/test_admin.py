"""The administration pages in Debian's chromium: an administrator registers a device through the form
and sees it listed (and ingest knows it), replays a dead letter that the registration fixed, and every
administration page is photographed at 1920 px (and the busiest at 390 px, where nothing may overflow
the screen sideways)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.harness import wait_for
from tests.support.browser import DESKTOP, PHONE, browser_page, live_console, login, shot
from tests.support.world import World, api_world

PAGES = ["districts", "institutions", "devices", "contacts", "contractors", "users", "users/director-a", "policies",
         "dead-letters", "audit"]


def dead_letter(world: World) -> None:
    """A battery report from a button not registered yet: it fits no model, so it is a dead letter."""
    world.system.pipeline.submit("zigbee2mqtt/sos-hall", b'{"battery":91,"linkquality":60}')
    wait_for(lambda: bool(world.client("admin").get("/api/v1/dead-letters").json()), what="dead letter")


def fits_the_screen(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def test_admin_registers_a_device_replays_a_dead_letter_and_every_page_renders(tmp_path: Path) -> None:
    with api_world(tmp_path) as world, live_console(world) as base:
        dead_letter(world)
        with browser_page(viewport=DESKTOP) as page:
            page.on("dialog", lambda dialog: dialog.accept())  # the confirmations
            login(page, base, "admin")
            assert page.url.endswith("/console/admin")
            expect(page.get_by_test_id("count-dead-letters")).to_have_text("1")
            shot(page, "admin-index-desktop")

            page.goto(f"{base}/console/admin/devices")
            page.fill("#form-main input[name=id]", "sos-hall")
            page.select_option("#form-main select[name=institution_id]", "inst-a")
            page.fill("#form-main input[name=profile]", "zigbee2mqtt-nope")
            page.fill("#form-main input[name=name]", "大厅一键报警")
            page.fill("#form-main input[name=room]", "大厅")
            page.click("#form-main button[type=submit]")
            expect(page.locator("#form-main .form-error")).to_contain_text("unknown profile 'zigbee2mqtt-nope'")
            page.fill("#form-main input[name=profile]", "zigbee2mqtt-sos-button")
            page.click("#form-main button[type=submit]")
            row = page.locator("tr[data-device='sos-hall']")
            expect(row).to_contain_text("大厅一键报警")
            expect(row).to_contain_text("小太阳托育园")
            expect(page.locator("#admin-status")).to_have_text("已保存")
            assert world.system.registry.lookup("sos-hall") is not None
            shot(page, "admin-devices-desktop")

            row.get_by_role("button", name="编辑").click()
            expect(page.locator("#form-main input[name=id]")).to_be_disabled()
            page.fill("#form-main input[name=room]", "门厅")
            page.click("#form-main button[type=submit]")
            expect(page.locator("tr[data-device='sos-hall']")).to_contain_text("门厅")

            page.goto(f"{base}/console/admin/dead-letters")
            letter = page.locator("tr[data-dead-letter]").first
            expect(letter).to_contain_text("fits none")
            letter.get_by_role("button", name="重放").click()
            expect(page.locator("#admin-status")).to_contain_text("已解码 / decoded: zigbee2mqtt-sos-button")
            expect(page.locator("tr[data-dead-letter]").first.locator(".replay-state")).to_contain_text("已重放")
            shot(page, "admin-dead-letters-desktop")

            page.goto(f"{base}/console/admin/contractors")
            page.locator("tr", has_text="ct-a").get_by_role("button", name="服务机构").click()
            page.select_option("#form-contracts select[name=institutions]", ["inst-a", "inst-b"])
            page.click("#form-contracts button[type=submit]")
            expect(page.locator("tr", has_text="ct-a")).to_contain_text("贝贝托育中心")
            assert sorted(i["id"] for i in world.client("contractor-a").get("/api/v1/institutions").json()) == [
                "inst-a", "inst-b"]

            page.goto(f"{base}/console/admin/users/director-a")
            page.fill("form[data-show=key] input[name=name]", "report-job")
            page.click("form[data-show=key] button[type=submit]")
            key = page.get_by_test_id("new-key")
            expect(key).to_contain_text("ak_")
            shot(page, "admin-user-key-desktop")
            bearer = world.anonymous()
            assert bearer.get("/api/v1/me", headers={"Authorization": f"Bearer {key.inner_text()}"}).json()[
                "username"] == "director-a"

            for name in PAGES:
                page.goto(f"{base}/console/admin/{name}")
                expect(page.locator("h1")).to_be_visible()
                assert "Internal Server Error" not in page.content()
                shot(page, f"admin-{name.replace('/', '-')}-desktop")
            page.goto(f"{base}/console/admin/audit?resource=device")
            expect(page.locator("[data-testid=rows] tbody tr")).to_have_count(2)  # created, then the room
            page.click("a[href^='/console/admin/dead-letters']")
            page.goto(f"{base}/console/admin/dead-letters")
            page.click("tr[data-dead-letter] a")
            expect(page.locator("pre.payload-full").first).to_contain_text('"battery":91')
            shot(page, "admin-dead-letter-desktop")
            page.click("[data-testid=lang-switch]")
            page.goto(f"{base}/console/admin/users")
            expect(page.locator("h1")).to_have_text("Users")
            shot(page, "admin-users-en-desktop")

        with browser_page(viewport=PHONE) as page:
            login(page, base, "admin")
            for name in ("devices", "dead-letters", "users"):
                page.goto(f"{base}/console/admin/{name}")
                assert fits_the_screen(page), name
                shot(page, f"admin-{name}-phone")


def test_non_admins_are_refused_and_strangers_sent_to_log_in(tmp_path: Path) -> None:
    with api_world(tmp_path) as world, live_console(world) as base, browser_page() as page:
        page.goto(f"{base}/console/admin/devices")
        assert "/login" in page.url
        login(page, base, "director-a")
        response = page.goto(f"{base}/console/admin/devices")
        assert response is not None and response.status == 403
        expect(page.locator("h1")).to_have_text("无权访问 / Forbidden")
