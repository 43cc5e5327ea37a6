"""Relational store (SQLAlchemy 2): institutions, device registry, events, dead letters.

SQLite is the default; PostgreSQL works with ``postgresql+psycopg://...``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, always returns aware UTC datetimes (SQLite drops the offset otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Institution(Base):
    __tablename__ = "institutions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))  # zh-CN
    name_en: Mapped[str] = mapped_column(String(200), default="")
    district: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Verification(StrEnum):
    """Commissioning state of a device (alerting/commissioning.py): verified once its test press has
    been seen end to end — decoded, routed to the drill receivers, acknowledged by a person."""

    UNVERIFIED = "unverified"
    VERIFIED = "verified"


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # external id: devEui, IMEI, z2m name
    institution_id: Mapped[str | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    profile: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200), default="")
    room: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    verification: Mapped[str] = mapped_column(String(12), default=Verification.UNVERIFIED)  # Verification
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    verified_by: Mapped[str] = mapped_column(String(200), default="")  # the timeline actor who acknowledged
    verified_incident_id: Mapped[int | None] = mapped_column(Integer)  # the proof (incidents.id)


class EventRecord(Base):
    """Every alarm/fault/availability event as decoded (the raw end of the audit trail)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_device_ts", "device_id", "ts"),
                      Index("ix_events_device_type_id", "device_id", "type", "id"))  # latest state per key

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(200))
    institution_id: Mapped[str | None] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(10))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(300))  # "mqtt:<topic>" or "http:<profile>"
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DeadLetter(Base):
    """A message that could not be decoded, kept whole with the reason."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    source: Mapped[str] = mapped_column(String(300))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(Text)
    # Replayed through the decoder by an administrator (api/routes/dead_letters.py): set when it succeeded
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replayed_by: Mapped[str] = mapped_column(String(100), default="")
    replay_result: Mapped[str] = mapped_column(Text, default="")  # what the last replay gave


class AlarmLaneTopic(Base):
    """A topic filter the alarm lane (gateway/alarm_lane.py) has subscribed, held while ``alive_until``
    lies ahead: until then the ingest sessions leave that topic's messages to the lane."""

    __tablename__ = "alarm_lane_topics"

    topic: Mapped[str] = mapped_column(String(500), primary_key=True)
    alive_until: Mapped[datetime] = mapped_column(UTCDateTime())


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # Every thread of the gateway may hold a connection. No ping per checkout: on PostgreSQL it cost a
    # round trip per transaction on the alarm path, and every writer retries on a dropped connection
    # anyway (SQLAlchemy then renews the pool; tested with a PostgreSQL outage).
    engine = create_engine(url, pool_size=20, max_overflow=20)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (API) do not block the ingest writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent; safe with several instances)."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    cfg = alembic_config(engine)
    with engine.begin() as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        after = MigrationContext.configure(conn).get_current_revision()
    if after != before:
        log.info("database schema %s: %s -> %s", engine.url.render_as_string(hide_password=True),
                 before or "empty", after)


def init_db(engine: Engine) -> sessionmaker[Any]:
    import alerting.models  # noqa: F401  (their tables belong to the same schema)
    import api.models  # noqa: F401

    migrate(engine)
    if engine.dialect.name == "sqlite":
        return SerializedWrites(engine, expire_on_commit=False)
    return sessionmaker(engine, expire_on_commit=False)


class SerializedWrites(sessionmaker[Session]):
    """SQLite lets one writer in at a time, and a waiting connection polls with sleeps of up to 100 ms
    (its busy handler), which an alarm cannot afford behind a burst of writes. So this process's write
    transactions (``sessions.begin()``) queue on a lock instead and start the moment the previous one
    ends. Reads (``sessions()``) are not held up: WAL readers never wait for the writer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_lock = threading.RLock()

    @contextmanager
    def begin(self) -> Iterator[Session]:
        with self._write_lock, super().begin() as session:
            yield session
