"""A private influxd (Debian's InfluxDB 1.6, v1 HTTP API) on free loopback ports, in a temp dir.

stop() and start() again keep the port and the data, for outage tests.
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
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.rpc_port = free_port()
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
[logging]
  level = "warn"
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
""")

    def start(self, timeout: float = 30.0) -> InfluxServer:
        if not Path(INFLUXD).exists():
            raise RuntimeError("influxd is not installed: run `make test`, which installs it")
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen([INFLUXD, "-config", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"influxd exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).status_code == 204:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError("influxd did not answer /ping")

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc = None

    def query(self, db: str, q: str) -> list[dict[str, Any]]:
        """Rows of the first series of an InfluxQL query, as dicts keyed by column."""
        resp = httpx.post(f"{self.url}/query", params={"db": db}, data={"q": q}, timeout=30)
        resp.raise_for_status()
        result = resp.json()["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        rows: list[dict[str, Any]] = []
        for series in result.get("series", []):
            cols = series["columns"]
            rows += [dict(zip(cols, values, strict=True)) for values in series["values"]]
        return rows

    def __enter__(self) -> InfluxServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
