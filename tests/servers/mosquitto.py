"""A private mosquitto broker on a free loopback port, in a temp dir.

It really persists: mosquitto started as root drops to the user named by its ``user`` option (default
``mosquitto``), which cannot write a temp dir root made, so it would run without ever saving its database.
The config names the current user instead (``user root`` keeps root; for any other user the option is
ignored), so the broker can write ``mosquitto.db`` in its own directory and ``restart()`` proves persistence.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.servers import free_port, stop_process, wait_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MAX_QUEUED_MESSAGES = 10_000_000  # as deploy/mosquitto.conf


class MosquittoServer:
    def __init__(self, workdir: Path, port: int | None = None, *, password_file: Path | None = None,
                 acl_file: Path | None = None, allow_anonymous: bool | None = None,
                 extra_config: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mosquitto.log"
        self.pid_file = workdir / "mosquitto.pid"
        self.db_file = workdir / "mosquitto.db"
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        anonymous = password_file is None if allow_anonymous is None else allow_anonymous
        security = [f"allow_anonymous {str(anonymous).lower()}"]
        if password_file:
            security.append(f"password_file {password_file}")
        if acl_file:
            security.append(f"acl_file {acl_file}")
        self.conf.write_text(
            "\n".join([
                f"listener {self.port} 127.0.0.1",
                *security,
                f"user {getpass.getuser()}",
                f"pid_file {self.pid_file}",
                "persistence true",
                f"persistence_location {workdir}/",
                "autosave_interval 1",
                # Gateways hold whole batches in flight until they are durable (MQTT 3.1.1 clients;
                # MQTT 5 clients announce Receive Maximum themselves).
                "max_inflight_messages 0",
                # Not 0 ("unlimited"): since the CVE-2023-28366 fix (Debian's 2.0.11, upstream >= 2.0.16)
                # mosquitto drops the connection of a client whose publish it refuses whenever the
                # client's outgoing packet count >= max_queued_messages, always true for 0.
                f"max_queued_messages {MAX_QUEUED_MESSAGES}",
                "max_queued_bytes 0",
                *extra_config,
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "",
            ])
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> MosquittoServer:
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is not installed: run `make test`, which installs it")
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log.read_text(errors='replace')[-2000:]}") from None
        return self

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its database on the way out."""
        stop_process(self._proc)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: nothing is saved on the way out; only what autosave already wrote survives."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def restart(self, *, hard: bool = False) -> MosquittoServer:
        """Stop (SIGTERM, or SIGKILL with ``hard``) and start again on the same port and directory."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its password and ACL files without dropping a connection."""
        if self._proc is None:
            raise RuntimeError("mosquitto is not running")
        os.kill(self._proc.pid, signal.SIGHUP)

    def __enter__(self) -> MosquittoServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
