"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis): whatever the
path, query or body, the gateway answers with a reason (4xx), never a crash (500)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from program.web import build_app as create_app
from tests.harness import gateway_settings, running_gateway

OPERATOR = "desk-token-0123456789"


def check_operation(op: Any, token: str) -> None:
    @given(case=op.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def answers(case: Any) -> None:
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        # 503 is an answer (healthz without a broker here, storage slow); a crash is a 500 (or raises here)
        status = response.status_code
        assert status < 500 or status == 503, (case.method, case.formatted_path, status, response.text[:300])

    answers()


def test_no_input_makes_the_api_fail(tmp_path: Path) -> None:
    s = gateway_settings(tmp_path, mqtt_port=1, telemetry_sink="sqlite", api_tokens={"desk": OPERATOR},
                         demo_inbox=True)
    with running_gateway(s, mqtt=False) as gw:
        schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(gw))
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert {op.path for op in operations} >= {"/api/v1/incidents/{incident_id}", "/ack/{token}",
                                                  "/ingest/{profile}"}
        for op in operations:
            check_operation(op, OPERATOR if op.path.startswith("/api/") else "test-token")
