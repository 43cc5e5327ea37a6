"""Logging in through the real console in Debian's chromium: each role lands on its own page; a wrong
password is refused with a message, and the page says so in the chosen language."""

from __future__ import annotations

from pathlib import Path

from tests.support.browser import PHONE, browser_page, live_console, login, shot
from tests.support.world import api_world


def test_login_lands_each_role_on_its_page_and_refuses_a_wrong_password(tmp_path: Path) -> None:
    with api_world(tmp_path) as world, live_console(world) as base:
        with browser_page(viewport=PHONE) as page:
            page.goto(f"{base}/console/board")
            assert "/login" in page.url  # not logged in: sent to the login page, then back
            shot(page, "login-phone")
            page.fill("input[name=username]", "contractor-a")
            page.fill("input[name=password]", "wrong password!")
            page.click("form[action='/login'] button")
            assert page.get_by_role("alert").inner_text() == "用户名或密码错误"
            page.click("[data-testid=lang-switch]")
            page.fill("input[name=username]", "contractor-a")
            page.fill("input[name=password]", "wrong password!")
            page.click("form[action='/login'] button")
            assert page.get_by_role("alert").inner_text() == "wrong username or password"
        for username, home in [("contractor-a", "/console/board"), ("director-a", "/console/institution"),
                               ("commission-siming", "/console/overview"), ("admin", "/console/admin")]:
            with browser_page() as page:
                login(page, base, username)
                assert page.url.split("?")[0].endswith(home), (username, page.url)
