"""A NUL or other control character in a query or path parameter is a 422 with a reason: PostgreSQL
refuses NUL in text, and that refusal must never surface as a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.world import api_world


def test_control_characters_in_filters_and_ids_are_refused_not_crashes(tmp_path: Path, postgres: Any) -> None:
    with api_world(tmp_path, database_url=postgres.new_database("controlchars")) as world:
        admin = world.client("admin")
        for url in ("/api/v1/incidents?open_only=false&institution=a%00b", "/api/v1/board?institution=a%00b",
                    "/api/v1/device-health?institution=a%00b", "/api/v1/drill-windows?institution=a%00b",
                    "/api/v1/institution-summary/a%00b", "/api/v1/readings/a%00b"):
            r = admin.get(url)
            assert r.status_code == 422, (url, r.status_code, r.text[:200])
        assert admin.get("/api/v1/incidents?open_only=false&institution=inst-a").status_code == 200
