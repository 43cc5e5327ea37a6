"""A private mosquitto broker on a free loopback port, in a temp dir."""

from __future__ import annotations

import getpass
import shutil
import subprocess
from pathlib import Path

from tests.servers import free_port, stop_process, wait_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class MosquittoServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mosquitto.log"
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            "\n".join([
                f"listener {self.port} 127.0.0.1",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {workdir}/",
                "autosave_interval 1",
                # Run as root, mosquitto drops to the `mosquitto` user and then cannot write this
                # directory: it would never persist. Stay the user we are.
                f"user {getpass.getuser()}",
                # Gateways hold whole batches in flight until they are durable (MQTT 3.1.1 clients;
                # MQTT 5 clients announce Receive Maximum themselves).
                "max_inflight_messages 0",
                "max_queued_messages 0",
                "max_queued_bytes 0",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "",
            ])
        )

    def start(self) -> MosquittoServer:
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is not installed: run `make test`, which installs it")
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        """A clean stop (SIGTERM): mosquitto writes its persistence file on the way out."""
        stop_process(self._proc)
        self._proc = None

    def kill(self) -> None:
        """kill -9: what was not yet autosaved (every second here) is gone."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def restart(self) -> None:
        """Stop and start on the same port with the same persistence directory."""
        self.stop()
        self.start()

    @property
    def persistence_file(self) -> Path:
        return self.workdir / "mosquitto.db"

    def __enter__(self) -> MosquittoServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
