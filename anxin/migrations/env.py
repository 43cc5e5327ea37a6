"""Alembic environment: runs against the connection handed over by anxin.db.migrate()."""

from __future__ import annotations

from alembic import context

import alerting.models  # noqa: F401  (registers the alerting tables)
import api.models  # noqa: F401  (and the API's)
from anxin.db import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through anxin.db.migrate(engine)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
