"""A private PostgreSQL cluster (Debian's postgresql) on a free loopback port, in a temp dir.

initdb refuses to run as root, so when the tests run as root the cluster belongs to the ``postgres``
system user the Debian package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.servers import free_port, wait_port


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make test`, which installs it")
    return Path(found[-1]).parent


class PostgresServer:
    def __init__(self, *, fsync: bool = False) -> None:
        self.fsync = fsync  # off for tests (speed); on for benchmarks (what production runs)
        self.port = free_port()
        self.bindir = _bindir()
        self.workdir = Path(tempfile.mkdtemp(prefix="anxin-pg-"))
        self.datadir = self.workdir / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.workdir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://anxin@127.0.0.1:{self.port}/anxin"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.workdir)

    def start(self) -> PostgresServer:
        self._run(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "anxin", "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8")
        self.resume()
        wait_port(self.port)
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "anxin", "anxin")
        return self

    def new_database(self, name: str) -> str:
        """A fresh empty database on this server; returns its URL."""
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "anxin", name)
        return f"postgresql+psycopg://anxin@127.0.0.1:{self.port}/{name}"

    def execute(self, sql: str) -> None:
        """Run a statement as the cluster's superuser (autocommit)."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=anxin dbname=anxin", autocommit=True) as conn:
            conn.execute(sql.encode())

    def pause(self) -> None:
        """Stop the server but keep its data (an outage); ``resume()`` starts it again."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        fsync = "on" if self.fsync else "off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.workdir / "pg.log"), "-w",
                  "-o", f"-p {self.port} -h 127.0.0.1 -k {self.workdir} -c fsync={fsync}", "start")

    def stop(self) -> None:
        if self.datadir.exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
