"""A private influxd (Debian's InfluxDB 1.6, v1 HTTP API) on free loopback ports, in a temp dir.

stop() and start() again keep the ports and the data, for outage tests. If influxd is not installed,
start() fails loudly: the test command (`make test`) installs it. ``auth=True`` turns on authentication
and creates an admin user (``.username``/``.password``), which query() then uses.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.servers import free_port, stop_process

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"


class InfluxServer:
    username = "admin"
    password = "s3cret pass"

    def __init__(self, workdir: Path, *, auth: bool = False) -> None:
        self.workdir = workdir
        self.auth = auth
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.rpc_port = free_port()  # the top-level bind-address (backup/restore RPC service)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "influxd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "influxdb.conf"
        self.conf.write_text(f"""
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{workdir}/meta"
  logging-enabled = false
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  auth-enabled = {"true" if auth else "false"}
[logging]
  level = "warn"
  suppress-logo = true
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
""")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> InfluxServer:
        """Start influxd (again, on the same port and data) and wait until /ping answers 204."""
        if self.running:
            return self
        if not Path(INFLUXD).exists():
            raise RuntimeError(f"influxd is not installed ({INFLUXD}): run `make test`, which installs it")
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen([INFLUXD, "-config", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise RuntimeError(f"influxd exited with {code}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).status_code == 204:
                    if self.auth:  # the first admin user may be created without credentials
                        q = f"CREATE USER {self.username} WITH PASSWORD '{self.password}' WITH ALL PRIVILEGES"
                        httpx.post(f"{self.url}/query", data={"q": q}, auth=self._auth()).raise_for_status()
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"influxd did not answer /ping within {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc = None

    def query(self, db: str, q: str, *, epoch: str | None = None) -> list[dict[str, Any]]:
        """Rows of an InfluxQL query (every series, in order) as dicts keyed by column.

        ``epoch="ns"`` returns times as integer nanoseconds instead of RFC 3339 strings.
        """
        params = {"db": db}
        if epoch:
            params["epoch"] = epoch
        resp = httpx.post(f"{self.url}/query", params=params, data={"q": q}, auth=self._auth(), timeout=30)
        resp.raise_for_status()
        result = resp.json()["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        rows: list[dict[str, Any]] = []
        for series in result.get("series", []):
            cols = series["columns"]
            rows += [dict(zip(cols, values, strict=True)) for values in series["values"]]
        return rows

    def _auth(self) -> httpx.BasicAuth | None:
        return httpx.BasicAuth(self.username, self.password) if self.auth else None

    def __enter__(self) -> InfluxServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
