"""The administration API end to end against the real app and database: every resource created,
changed and removed through HTTP, with the validation answers people see, the audit row each change
writes (who, when, from where, what), the scope rules (non-admins 403 on every administration
endpoint; institutions and devices readable within one's scope, 404 outside it), and the replay of a
dead letter after the registry was fixed. The main flows run on SQLite and once on PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from anxin.db import DeadLetter, Device, Verification
from api.models import AuditEntry, User
from tests.harness import wait_for
from tests.servers.postgres import PostgresServer
from tests.support.world import PASSWORD, World, api_world

ADMIN_PREFIXES = ("/api/v1/districts", "/api/v1/contacts", "/api/v1/contractors", "/api/v1/users",
                  "/api/v1/policies", "/api/v1/dead-letters", "/api/v1/audit")
SCOPED_READS = ("/api/v1/institutions", "/api/v1/devices")  # readable within one's scope; changes admin-only
NON_ADMINS = ("director-a", "contractor-a", "commission-siming")
ADMIN_PAGES = ["", "/districts", "/institutions", "/devices", "/contacts", "/contractors", "/users",
               "/users/director-a", "/policies", "/dead-letters", "/audit"]


def audit_rows(world: World, resource: str, resource_id: str) -> list[AuditEntry]:
    with world.system.sessions() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.resource == resource,
                                                       AuditEntry.resource_id == resource_id)
                              .order_by(AuditEntry.id)))


def last_audit(world: World, resource: str, resource_id: str) -> AuditEntry:
    rows = audit_rows(world, resource, resource_id)
    assert rows, f"no audit row for {resource} {resource_id}"
    return rows[-1]


def assert_audited(world: World, resource: str, resource_id: str, action: str, started: datetime) -> AuditEntry:
    row = last_audit(world, resource, resource_id)
    assert (row.actor, row.role, row.action, row.ip) == ("admin", "admin", action, "testclient")
    assert started <= row.at <= datetime.now(UTC)
    return row


def detail_of(r: Any) -> str:
    detail = r.json()["detail"]
    return detail if isinstance(detail, str) else " ".join(str(e["msg"]) for e in detail)


def main_flows(world: World) -> None:
    """Districts, institutions, devices, contacts, contractors, users and keys: create, change, remove."""
    http = world.client("admin")
    started = datetime.now(UTC) - timedelta(seconds=1)

    # districts
    r = http.post("/api/v1/districts", json={"name": "集美区", "name_en": "Jimei"})
    assert r.status_code == 201 and r.json() == {"name": "集美区", "name_en": "Jimei", "institutions": 0}
    assert_audited(world, "district", "集美区", "create", started)
    assert http.post("/api/v1/districts", json={"name": "集美区"}).status_code == 409
    r = http.patch("/api/v1/districts/集美区", json={"name_en": "Jimei District"})
    assert r.json()["name_en"] == "Jimei District"
    assert last_audit(world, "district", "集美区").detail == {"changes": {"name_en": ["Jimei", "Jimei District"]}}
    r = http.delete("/api/v1/districts/思明区")
    assert r.status_code == 409 and "1 institution(s)" in detail_of(r)

    # institutions
    r = http.post("/api/v1/institutions", json={"id": "bad id!", "name": "x", "district": "集美区"})
    assert r.status_code == 422 and "an id is 1-64 letters" in detail_of(r)
    r = http.post("/api/v1/institutions", json={"id": "inst-c", "name": "新园", "district": "海沧区"})
    assert r.status_code == 422 and "unknown district '海沧区'" in detail_of(r)
    r = http.post("/api/v1/institutions", json={"id": "inst-c", "name": "  ", "district": "集美区"})
    assert r.status_code == 422 and "must not be empty" in detail_of(r)
    r = http.post("/api/v1/institutions", json={"id": "inst-c", "name": "集美宝贝园", "name_en": "Jimei Baby",
                                                "district": "集美区"})
    assert r.status_code == 201, r.text
    assert r.json()["devices"] == 0 and r.json()["district"] == "集美区"
    assert_audited(world, "institution", "inst-c", "create", started)
    r = http.post("/api/v1/institutions", json={"id": "inst-c", "name": "x", "district": "集美区"})
    assert r.status_code == 409
    r = http.patch("/api/v1/institutions/inst-c", json={"name": "集美宝贝托育园"})
    assert r.status_code == 200 and r.json()["name"] == "集美宝贝托育园"
    assert http.patch("/api/v1/institutions/nowhere", json={"name": "x"}).status_code == 404
    r = http.delete("/api/v1/institutions/inst-a")
    assert r.status_code == 409 and "3 devices" in detail_of(r)

    # devices: registered through the API, ingest knows it at once
    r = http.post("/api/v1/devices", json={"id": "sos-c", "institution_id": "inst-c", "profile": "no-such-profile"})
    assert r.status_code == 422 and "unknown profile 'no-such-profile'" in detail_of(r)
    r = http.post("/api/v1/devices", json={"id": "sos-c", "institution_id": "nowhere",
                                           "profile": "zigbee2mqtt-sos-button"})
    assert r.status_code == 422 and "no institution 'nowhere'" in detail_of(r)
    r = http.post("/api/v1/devices", json={"id": "sos-c", "institution_id": "inst-c",
                                           "profile": "zigbee2mqtt-sos-button", "name": "前台报警", "room": "前台"})
    assert r.status_code == 201, r.text
    assert r.json()["institution"] == "集美宝贝托育园" and r.json()["verification"] == "unverified"
    info = world.system.registry.lookup("sos-c")
    assert info is not None and (info.institution_id, info.profile, info.room) == ("inst-c", "zigbee2mqtt-sos-button",
                                                                                   "前台")
    assert_audited(world, "device", "sos-c", "create", started)
    assert http.post("/api/v1/devices", json={"id": "sos-c", "institution_id": "inst-c",
                                              "profile": "zigbee2mqtt-sos-button"}).status_code == 409
    with world.system.sessions.begin() as s:  # commissioned (as a test press acknowledged would)
        device = s.get(Device, "sos-c")
        assert device is not None
        device.verification, device.verified_by = Verification.VERIFIED, "tester"
    r = http.patch("/api/v1/devices/sos-c", json={"room": "大厅"})
    assert r.json()["verification"] == "verified" and r.json()["room"] == "大厅"  # a room is no new device
    r = http.patch("/api/v1/devices/sos-c", json={"profile": "zigbee2mqtt-sos-single"})
    assert r.status_code == 200 and r.json()["verification"] == "unverified"  # another model: prove it again
    assert last_audit(world, "device", "sos-c").detail["changes"] == {
        "profile": ["zigbee2mqtt-sos-button", "zigbee2mqtt-sos-single"]}
    assert world.system.registry.lookup("sos-c").profile == "zigbee2mqtt-sos-single"  # type: ignore[union-attr]
    assert http.get("/api/v1/devices/sos-c").json()["profile"] == "zigbee2mqtt-sos-single"
    r = http.delete("/api/v1/institutions/inst-c")
    assert r.status_code == 409 and "1 devices" in detail_of(r)
    assert http.delete("/api/v1/devices/sos-c").status_code == 204
    assert world.system.registry.lookup("sos-c") is None
    assert_audited(world, "device", "sos-c", "delete", started)
    assert http.delete("/api/v1/devices/sos-c").status_code == 404

    # contacts: secrets are written, never read back
    r = http.post("/api/v1/contacts", json={"id": "police-jimei", "role": "polise", "name": "集美公安",
                                            "district": "集美区", "webhook_url": "http://127.0.0.1:9/p"})
    assert r.status_code == 422 and "unknown role 'polise'" in detail_of(r)
    r = http.post("/api/v1/contacts", json={"id": "police-jimei", "role": "police", "name": "集美公安",
                                            "district": "集美区"})
    assert r.status_code == 422 and "at least one way to reach" in detail_of(r)
    r = http.post("/api/v1/contacts", json={"id": "police-jimei", "role": "police", "name": "集美公安",
                                            "district": "集美区", "phone": "call me"})
    assert r.status_code == 422 and "phone" in detail_of(r)
    r = http.post("/api/v1/contacts", json={"id": "police-jimei", "role": "police", "name": "集美公安",
                                            "district": "集美区", "phone": "+86 592 110",
                                            "webhook_url": "https://jimei.example/hook",
                                            "webhook_secret": "s3cr3t-hook"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["webhook_secret_set"] is True and body["channel_secret_set"] is False
    assert body["channels"] == ["sms", "voice", "webhook"]
    assert "s3cr3t-hook" not in r.text
    assert "s3cr3t-hook" not in http.get("/api/v1/contacts").text
    row = assert_audited(world, "contact", "police-jimei", "create", started)
    assert "s3cr3t-hook" not in str(row.detail) and row.detail["webhook_secret"] == "(set)"
    r = http.patch("/api/v1/contacts/police-jimei", json={"name": "集美公安分局"})
    assert r.json()["webhook_secret_set"] is True  # omitted: kept
    r = http.patch("/api/v1/contacts/police-jimei", json={"webhook_secret": ""})
    assert r.json()["webhook_secret_set"] is False
    assert last_audit(world, "contact", "police-jimei").detail == {"changes": {"webhook_secret": "(cleared)"}}
    r = http.patch("/api/v1/contacts/police-jimei", json={"institution_id": "inst-c"})
    assert r.status_code == 422 and "not both" in detail_of(r)
    assert http.get("/api/v1/contacts/police-jimei").json()["institution_id"] is None  # refused: nothing changed
    r = http.delete("/api/v1/districts/集美区")
    assert r.status_code == 409 and "1 institution(s), 1 contact(s)" in detail_of(r)
    assert http.delete("/api/v1/contacts/police-jimei").status_code == 204
    assert http.get("/api/v1/contacts/police-jimei").status_code == 404

    # contractors: contracts set the contractor users' scope
    r = http.post("/api/v1/contractors", json={"id": "ct-c", "name": "集美安保", "institutions": ["inst-c", "nowhere"]})
    assert r.status_code == 422 and "nowhere" in detail_of(r)
    r = http.post("/api/v1/contractors", json={"id": "ct-c", "name": "集美安保", "institutions": ["inst-c"]})
    assert r.status_code == 201 and r.json() == {"id": "ct-c", "name": "集美安保", "name_en": "",
                                                 "institutions": ["inst-c"], "users": 0}
    assert [i["id"] for i in world.client("contractor-a").get("/api/v1/institutions").json()] == ["inst-a"]
    r = http.put("/api/v1/contractors/ct-a/institutions", json={"institutions": ["inst-a", "inst-c"]})
    assert r.json()["institutions"] == ["inst-a", "inst-c"]
    assert last_audit(world, "contractor", "ct-a").detail == {"institutions": {"added": ["inst-c"], "removed": []}}
    assert sorted(i["id"] for i in world.client("contractor-a").get("/api/v1/institutions").json()) == [
        "inst-a", "inst-c"]
    http.put("/api/v1/contractors/ct-a/institutions", json={"institutions": ["inst-a"]})
    assert world.client("contractor-a").get("/api/v1/institutions/inst-c").status_code == 404
    r = http.delete("/api/v1/contractors/ct-a")
    assert r.status_code == 409 and "1 user(s)" in detail_of(r)

    # users: the rules of `anxin user` (api/security.py), passwords, disabling, keys
    r = http.post("/api/v1/users", json={"username": "guard-c", "password": PASSWORD, "role": "contractor"})
    assert r.status_code == 422 and "a contractor user needs a contractor" in detail_of(r)
    r = http.post("/api/v1/users", json={"username": "guard-c", "password": "short", "role": "contractor",
                                         "contractor_id": "ct-c"})
    assert r.status_code == 422 and "at least 10 characters" in detail_of(r)
    r = http.post("/api/v1/users", json={"username": "guard c", "password": PASSWORD, "role": "admin"})
    assert r.status_code == 422 and "a username is" in detail_of(r)
    r = http.post("/api/v1/users", json={"username": "guard-c", "password": PASSWORD, "role": "contractor",
                                         "contractor_id": "ct-c", "display_name": "集美值班员"})
    assert r.status_code == 201, r.text
    assert r.json()["contractor_id"] == "ct-c" and r.json()["active"] is True
    row = assert_audited(world, "user", "guard-c", "create", started)
    assert "password" not in row.detail and PASSWORD not in str(row.detail)
    assert http.post("/api/v1/users", json={"username": "guard-c", "password": PASSWORD, "role": "admin"}
                     ).status_code == 409
    guard = world.client("guard-c")
    assert [i["id"] for i in guard.get("/api/v1/institutions").json()] == ["inst-c"]
    r = http.patch("/api/v1/users/guard-c", json={"role": "institution"})
    assert r.status_code == 422 and "an institution user needs an institution" in detail_of(r)
    r = http.patch("/api/v1/users/guard-c", json={"role": "institution", "institution_id": "inst-c"})
    assert r.json()["role"] == "institution" and r.json()["contractor_id"] is None
    assert guard.get("/api/v1/me").status_code == 401  # a new scope: log in again
    r = http.post("/api/v1/users/guard-c/keys", json={"name": "dispatch"})
    assert r.status_code == 201
    key = r.json()["key"]
    bearer = TestClient(world.app, headers={"Authorization": f"Bearer {key}"})
    assert bearer.get("/api/v1/me").json()["username"] == "guard-c"
    assert [k["name"] for k in http.get("/api/v1/users/guard-c/keys").json()] == ["dispatch"]
    assert key not in http.get("/api/v1/users/guard-c/keys").text
    assert http.delete(f"/api/v1/users/guard-c/keys/{r.json()['id']}").status_code == 204
    assert bearer.get("/api/v1/me").status_code == 401
    assert http.post("/api/v1/users/guard-c/password", json={"password": "another-long-password"}).status_code == 204
    assert_audited(world, "user", "guard-c", "update", started)
    anon = world.anonymous()
    assert anon.post("/login", data={"username": "guard-c", "password": "another-long-password"}).status_code == 303
    r = http.patch("/api/v1/users/guard-c", json={"active": False})
    assert r.json()["active"] is False
    assert anon.post("/login", data={"username": "guard-c", "password": "another-long-password"}).status_code == 401
    r = http.patch("/api/v1/users/admin", json={"active": False})
    assert r.status_code == 409 and "last active administrator" in detail_of(r)
    r = http.patch("/api/v1/users/admin", json={"role": "commission", "districts": ["思明区"]})
    assert r.status_code == 409
    assert http.get("/api/v1/me").json()["role"] == "admin"  # refused changes changed nothing

    # institution removed once nothing holds it any more
    http.patch("/api/v1/users/guard-c", json={"role": "commission", "districts": ["集美区"]})
    http.put("/api/v1/contractors/ct-c/institutions", json={"institutions": []})
    assert http.delete("/api/v1/contractors/ct-c").status_code == 204
    assert http.delete("/api/v1/institutions/inst-c").status_code == 204
    assert_audited(world, "institution", "inst-c", "delete", started)
    assert http.get("/api/v1/institutions/inst-c").status_code == 404

    # a NUL byte is refused before the database sees it (PostgreSQL cannot store one: no 500)
    for url in ("/api/v1/institutions/a%00b", "/api/v1/devices/a%00b", "/api/v1/users/a%00b",
                "/api/v1/audit?actor=a%00b", "/api/v1/devices?institution=a%00b"):
        assert http.get(url).status_code == 422, url
    r = http.post("/api/v1/districts", json={"name": "a\u0000b"})
    assert r.status_code == 422 and "control characters" in detail_of(r)


def test_main_flows_sqlite(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        main_flows(world)


def test_main_flows_postgresql(tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.new_database(f"admin_{uuid.uuid4().hex[:8]}")
    with api_world(tmp_path, database_url=url) as world:
        main_flows(world)
        dead_letter_replay(world, tmp_path)


def test_non_admins_get_403_on_every_admin_endpoint_and_anonymous_401(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        paths: dict[str, dict[str, Any]] = world.app.openapi()["paths"]
        routes = [(m.upper(), path) for path, ops in paths.items() if path.startswith(ADMIN_PREFIXES + SCOPED_READS)
                  for m in ops]
        assert len(routes) >= 30
        for method, path in routes:
            url = path.replace("{device_id}", "sos-a").replace("{institution_id}", "inst-a")
            url = url.replace("{key_id}", "1").replace("{dead_letter_id}", "1")
            for name in ("{name}", "{contact_id}", "{contractor_id}", "{username}"):
                url = url.replace(name, "x")
            assert world.anonymous().request(method, url, json={}).status_code == 401, (method, url)
            if method == "GET" and path.startswith(SCOPED_READS):
                continue  # scoped reads: see the next test
            for user in NON_ADMINS:
                r = world.client(user).request(method, url, json={})
                assert r.status_code == 403, (user, method, url, r.status_code, r.text[:200])
        html = {"Accept": "text/html"}
        for url in [f"/console/admin{p}" for p in ADMIN_PAGES]:
            r = world.anonymous().get(url, headers=html)
            assert r.status_code == 303 and r.headers["location"] == f"/login?next={url}", url
            for user in NON_ADMINS:
                assert world.client(user).get(url, headers=html).status_code == 403, (user, url)
            assert world.client("admin").get(url, headers=html).status_code == 200, url
        with world.system.sessions() as s:  # nothing was written by any of them
            assert not s.scalars(select(AuditEntry).where(AuditEntry.action.not_in(["login"]))).first()


def test_institutions_and_devices_are_read_within_the_scope(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        for user in ("director-a", "contractor-a", "commission-siming"):
            http = world.client(user)
            assert [i["id"] for i in http.get("/api/v1/institutions").json()] == ["inst-a"], user
            assert http.get("/api/v1/institutions/inst-a").json()["devices"] == 3
            assert http.get("/api/v1/institutions/inst-b").status_code == 404
            assert http.get("/api/v1/institutions/nowhere").status_code == 404
            assert sorted(d["id"] for d in http.get("/api/v1/devices").json()) == ["air-a", "smoke-a", "sos-a"]
            assert http.get("/api/v1/devices?institution=inst-b").json() == []
            assert http.get("/api/v1/devices/sos-a").json()["room"] == "前台"
            assert http.get("/api/v1/devices/sos-b").status_code == 404
            assert http.get("/api/v1/devices/nowhere").status_code == 404
        admin = world.client("admin")
        assert sorted(i["id"] for i in admin.get("/api/v1/institutions").json()) == ["inst-a", "inst-b"]
        assert len(admin.get("/api/v1/devices").json()) == 5
        assert admin.get("/api/v1/devices?institution=inst-b&limit=1").json()[0]["id"] in ("sos-b", "smoke-b")


def dead_letter_replay(world: World, tmp_path: Path) -> None:
    """A battery report from a button nobody registered fits no model (dead letter); replaying it
    before the fix fails again and keeps it with the reason; registered, the replay decodes it."""
    http = world.client("admin")
    topic, payload = "zigbee2mqtt/sos-new", b'{"battery":87,"linkquality":40}'
    world.system.pipeline.submit(topic, payload)

    def dead() -> DeadLetter | None:
        with world.system.sessions() as s:
            found: DeadLetter | None = s.scalar(select(DeadLetter).where(DeadLetter.source == f"mqtt:{topic}"))
            return found

    wait_for(lambda: dead() is not None, what="dead letter")
    letter = dead()
    assert letter is not None and "fits none" in letter.reason
    rows = http.get("/api/v1/dead-letters").json()
    assert rows[0]["id"] == letter.id and rows[0]["preview"] == payload.decode() and rows[0]["preview_kind"] == "text"
    assert http.get(f"/api/v1/dead-letters/{letter.id}").json()["hex"] == payload.hex(" ")

    r = http.post(f"/api/v1/dead-letters/{letter.id}/replay")
    assert r.status_code == 200 and r.json()["ok"] is False and "fits none" in r.json()["message"]
    assert r.json()["dead_letter"]["replayed_at"] is None and r.json()["dead_letter"]["replay_result"] == (
        "failed (no_profile)")
    with world.system.sessions() as s:  # kept, and no second dead letter of the same message
        assert len(list(s.scalars(select(DeadLetter).where(DeadLetter.source == f"mqtt:{topic}")))) == 1
    assert last_audit(world, "dead_letter", str(letter.id)).detail["ok"] is False

    assert http.post("/api/v1/devices", json={"id": "sos-new", "institution_id": "inst-a",
                                              "profile": "zigbee2mqtt-sos-button", "room": "大厅"}).status_code == 201
    started = datetime.now(UTC) - timedelta(seconds=1)
    r = http.post(f"/api/v1/dead-letters/{letter.id}/replay")
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
    assert "decoded: zigbee2mqtt-sos-button, device sos-new, 2 reading(s)" in r.json()["message"]
    assert r.json()["dead_letter"]["replayed_by"] == "admin" and r.json()["dead_letter"]["replayed_at"]
    row = assert_audited(world, "dead_letter", str(letter.id), "replay", started)
    assert row.detail == {"ok": True, "source": f"mqtt:{topic}"}
    assert world.system.drain(20)
    readings = sqlite3.connect(tmp_path / "telemetry.db").execute(
        "SELECT institution_id, value FROM readings WHERE device_id='sos-new' AND metric='battery'").fetchall()
    assert readings == [("inst-a", 87.0)]
    r = http.post(f"/api/v1/dead-letters/{letter.id}/replay")
    assert r.status_code == 409 and "replayed already" in detail_of(r)  # never stored twice
    assert http.get("/api/v1/dead-letters?pending_only=true").json() == []
    assert http.post("/api/v1/dead-letters/999999/replay").status_code == 404


def test_dead_letter_replay_after_registering_the_device(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        dead_letter_replay(world, tmp_path)


def test_truncated_dead_letter_is_not_replayed(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        with world.system.sessions.begin() as s:
            s.add(DeadLetter(received_at=datetime.now(UTC), source="mqtt:zigbee2mqtt/sos-a", payload=b'{"action":',
                             reason="payload too large: 300000 bytes, limit 262144; first 1024 bytes kept"))
        http = world.client("admin")
        [row] = http.get("/api/v1/dead-letters").json()
        r = http.post(f"/api/v1/dead-letters/{row['id']}/replay")
        assert r.status_code == 409 and "cut short" in detail_of(r)


def test_policies_and_audit_log(tmp_path: Path) -> None:
    with api_world(tmp_path) as world:
        http = world.client("admin")
        policies = http.get("/api/v1/policies").json()
        assert [r["name"] for r in policies["routing"]["routes"]][:2] == ["panic", "fire"]
        assert policies["routing"]["policies"]["life_safety"]["steps"][1]["after_s"] == 60
        assert any(r["metric"] == "co2" for r in policies["thresholds"]["rules"])
        http.post("/api/v1/districts", json={"name": "集美区"})
        http.patch("/api/v1/devices/sos-a", json={"room": "大厅"})
        world.client("director-a")  # a login: audited too
        rows = http.get("/api/v1/audit").json()
        assert [(r["action"], r["resource"], r["resource_id"]) for r in rows[:3]] == [
            ("login", "user", "director-a"), ("update", "device", "sos-a"), ("create", "district", "集美区")]
        assert rows[1]["detail"] == {"changes": {"room": ["前台", "大厅"]}, "verification": "unverified"}
        assert [r["resource_id"] for r in http.get("/api/v1/audit?resource=device").json()] == ["sos-a"]
        assert {r["actor"] for r in http.get("/api/v1/audit?actor=director-a").json()} == {"director-a"}
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert http.get("/api/v1/audit", params={"since": future}).json() == []
        page = http.get("/api/v1/audit?limit=2").json()
        older = http.get(f"/api/v1/audit?limit=2&before_id={page[-1]['id']}").json()
        assert older and all(r["id"] < page[-1]["id"] for r in older)


def anxin_user(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANXIN_DATABASE_URL": world.system.settings.database_url}
    return subprocess.run([sys.executable, "-m", "program.cli", "user", *args], input=PASSWORD + "\n",
                          capture_output=True, text=True, timeout=60, env=env)


def test_cli_and_api_share_the_user_rules(tmp_path: Path) -> None:
    """`anxin user` refuses what the API refuses, in the same words (one rule, api/security.py)."""
    with api_world(tmp_path) as world:
        http = world.client("admin")
        cases: list[tuple[list[str], dict[str, Any]]] = [
            (["--role", "institution", "--institution", "nowhere"],
             {"role": "institution", "institution_id": "nowhere"}),
            (["--role", "contractor"], {"role": "contractor"}),
            (["--role", "commission", "--districts", "海沧区"], {"role": "commission", "districts": ["海沧区"]}),
        ]
        for args, body in cases:
            r = http.post("/api/v1/users", json={"username": "x-user", "password": PASSWORD, **body})
            out = anxin_user(world, "add", "x-user", *args)
            assert r.status_code == 422 and out.returncode == 2
            assert out.stderr.strip() == f"anxin user: {detail_of(r)}"
        with world.system.sessions.begin() as s:  # only one administrator left active
            for u in s.scalars(select(User).where(User.username != "admin")):
                u.active = u.role != "admin"
        r = http.patch("/api/v1/users/admin", json={"active": False})
        out = anxin_user(world, "disable", "admin")
        assert r.status_code == 409 and out.returncode == 2 and out.stderr.strip() == f"anxin user: {detail_of(r)}"
        with world.system.sessions() as s:
            assert s.scalar(select(User.active).where(User.username == "admin")) is True
            assert s.scalar(select(User).where(User.username == "x-user")) is None
