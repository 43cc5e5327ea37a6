"""Which database the command line works on: the one the gateway (or the demo) uses.

``ANXIN_DATABASE_URL`` when set; otherwise the URL the last gateway or demo started from this directory
recorded in ``var/anxin-database.txt``; otherwise the default. A command that only reads never creates an
empty SQLite file: it says where it looked instead."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from anxin.config import Settings
from anxin.db import init_db, make_engine

RUNTIME_FILE = Path("var/anxin-database.txt")


class NoDatabase(Exception):
    """One line for the user: where we looked and what to do."""


def remember_database(url: str) -> None:
    try:
        RUNTIME_FILE.parent.mkdir(parents=True, exist_ok=True)
        RUNTIME_FILE.write_text(url + "\n", encoding="utf-8")
    except OSError:  # a read-only working directory: the CLI then needs ANXIN_DATABASE_URL
        pass


def database_url() -> str:
    if os.environ.get("ANXIN_DATABASE_URL"):
        return Settings().database_url
    try:
        recorded = RUNTIME_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        recorded = ""
    return recorded or Settings().database_url


def open_database(*, create: bool = False) -> tuple[str, sessionmaker[Session]]:
    """(url, sessions) of the gateway's database, migrated. Without ``create``, a missing SQLite file
    is NoDatabase rather than a new empty database."""
    url = database_url()
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:") and not create:
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            raise NoDatabase(f"没有数据库 {path}：请先启动网关或演示（make demo），或设置 ANXIN_DATABASE_URL / "
                             f"no database at {path}: start the gateway or the demo first, or set ANXIN_DATABASE_URL")
    try:
        return url, init_db(make_engine(url))
    except Exception as exc:  # an unreachable PostgreSQL, a file that is not a database: one line, not a traceback
        first = (str(exc).splitlines() or [""])[0][:200]
        raise NoDatabase(f"数据库不可用 database unavailable ({_safe(url)}): {type(exc).__name__}: {first}") from None


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "?"
