"""The chaos suite prints what it counted, scenario by scenario, at the end of the run."""

from __future__ import annotations

from typing import Any

import pytest

_COUNTS: list[str] = []


@pytest.fixture
def counts(request: pytest.FixtureRequest) -> Any:
    def record(text: str) -> None:
        _COUNTS.append(f"{request.node.name}: {text}")

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _COUNTS:
        terminalreporter.section("chaos suite: counts")
        for line in _COUNTS:
            terminalreporter.write_line(line)
