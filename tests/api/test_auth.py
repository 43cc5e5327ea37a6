"""Logging in: argon2 hashes, a session cookie that scripts cannot read, CSRF on every change made with
the cookie, lockout after repeated wrong passwords, a per-address throttle, and an audit row for each."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from api.models import AuditEntry, LoginSession, User
from api.security import LOCK_AFTER_FAILURES, SESSION_COOKIE
from tests.support.world import PASSWORD, api_world


def test_passwords_are_argon2_and_the_cookie_is_httponly_and_samesite(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        with world.system.sessions() as s:
            user = s.scalar(select(User).where(User.username == "director-a"))
            assert user is not None and user.password_hash.startswith("$argon2id$")
            assert PASSWORD not in user.password_hash
        r = world.anonymous().post("/login", data={"username": "director-a", "password": PASSWORD})
        assert r.status_code == 303 and r.headers["location"] == "/console/institution"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
        token = cookie.split(";")[0].split("=", 1)[1]
        with world.system.sessions() as s:  # only a hash of the token is stored
            assert s.get(LoginSession, token) is None
            assert s.scalar(select(LoginSession.token_hash)) != token


def test_changes_with_the_cookie_need_the_csrf_token(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        incident = world.open_incident("sos-a", "inst-a")
        director = world.client("director-a")
        forged = world.anonymous()
        forged.cookies = director.cookies  # another site can make the browser send the cookie, not the token
        r = forged.post(f"/api/v1/incidents/{incident}/transition", json={"to": "acknowledged"})
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        r = forged.post(f"/api/v1/incidents/{incident}/transition", json={"to": "acknowledged"},
                        headers={"X-CSRF-Token": "guessed"})
        assert r.status_code == 403
        assert director.post(f"/api/v1/incidents/{incident}/transition",
                             json={"to": "acknowledged"}).status_code == 200
        # a machine with an API key has no cookie, hence no CSRF token to send
        key = world.api_key("contractor-a")
        r = world.anonymous().post(f"/api/v1/incidents/{incident}/transition", json={"to": "dispatched"},
                                   headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        # logging out ends the session: the same cookie no longer works
        assert director.post("/logout", data={"csrf": director.headers["X-CSRF-Token"]}).status_code == 303
        assert forged.get("/api/v1/me").status_code == 401


def test_wrong_passwords_lock_the_account_and_each_attempt_is_audited(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        http = world.anonymous()
        for _ in range(LOCK_AFTER_FAILURES):
            r = http.post("/login", data={"username": "contractor-b", "password": "not the password"})
            assert r.status_code == 401 and "用户名或密码错误" in r.text
        # now even the right password is refused for a while
        r = http.post("/login", data={"username": "contractor-b", "password": PASSWORD})
        assert r.status_code == 429 and "锁定" in r.text
        # an unknown user gets the same answer as a wrong password (no user enumeration)
        r = http.post("/login", data={"username": "nobody", "password": "whatever it is"})
        assert r.status_code == 401 and "用户名或密码错误" in r.text
        with world.system.sessions() as s:
            rows = list(s.scalars(select(AuditEntry).where(AuditEntry.actor.in_(["contractor-b", "nobody"]))))
        assert [r.action for r in rows] == ["login_failed"] * (LOCK_AFTER_FAILURES + 2)
        assert all(r.ip == "testclient" for r in rows)


def test_many_attempts_from_one_address_are_throttled(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        http = world.anonymous()
        throttle = world.app.state.login_throttle
        answers = [http.post("/login", data={"username": f"user{i}", "password": "x" * 12}).status_code
                   for i in range(throttle.limit + 3)]
        assert answers[: throttle.limit] == [401] * throttle.limit
        assert answers[throttle.limit:] == [429] * 3


def test_pages_redirect_to_login_and_the_api_answers_401(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        http = world.anonymous()
        r = http.get("/console/board", headers={"Accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/console/board"
        assert http.get("/api/v1/incidents").status_code == 401
        assert http.get("/api/v1/me", headers={"Authorization": "Bearer ak_wrong"}).status_code == 401
        # a login link cannot send people to another site
        r = http.post("/login", data={"username": "admin", "password": PASSWORD, "next": "//evil.example/x"})
        assert r.status_code == 303 and r.headers["location"] == "/console/admin"


def test_docs_are_served_without_a_cdn(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        http = world.anonymous()
        page = http.get("/docs").text
        assert "cdn" not in page.lower() and "/static/vendor/swagger-ui/swagger-ui-bundle.js" in page
        assert http.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
        assert http.get("/openapi.json").json()["paths"]["/api/v1/incidents"]
