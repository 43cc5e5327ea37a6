"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import alerting.models  # noqa: F401
import api.models  # noqa: F401
from anxin.db import Base, init_db, make_engine
from tests.servers.postgres import PostgresServer


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    init_db(engine)
    init_db(engine)  # a second start-up (another instance) is a no-op
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    return list(diff)


def test_migrations_match_models_sqlite(tmp_path: Path) -> None:
    assert _diff(f"sqlite:///{tmp_path}/m.db") == []


def test_migrations_match_models_postgresql(postgres: PostgresServer) -> None:
    assert _diff(postgres.url) == []
