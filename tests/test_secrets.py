"""No usable default secrets: `anxin gateway` refuses to start (one line, non-zero exit, no traceback)
without a real acknowledge-link secret and operator tokens; the demo makes and keeps its own."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from alerting.ack_links import BadLink, make_token, verify_token
from anxin.config import Settings, check_secrets
from program.cli import EXIT_BAD_SETTINGS, demo_secrets
from tests.harness import wait_for
from tests.servers import free_port

GOOD_SECRET = "k3F9v0qL2xY7wR5tB8nM1cJ6hD4sG0aZ"  # 32 characters
GOOD_TOKENS = "值班室:0123456789abcdef0123"


def gateway(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`anxin gateway` in an empty directory (no .env) with only these ANXIN_ variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANXIN_")}
    # Nothing is listening on these: a gateway that got past the check would fail differently (or hang).
    clean |= {"ANXIN_MQTT_PORT": "1", "ANXIN_HTTP_PORT": "1", "ANXIN_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
              **env}
    return subprocess.run([sys.executable, "-m", "program.cli", "gateway"], capture_output=True, text=True,
                          timeout=60, env=clean, cwd=tmp_path)


@pytest.mark.parametrize(("env", "says"), [
    ({"ANXIN_API_TOKENS": GOOD_TOKENS}, "ANXIN_ALERTING_SECRET is not set"),
    ({"ANXIN_ALERTING_SECRET": "change-me", "ANXIN_API_TOKENS": GOOD_TOKENS}, "ANXIN_ALERTING_SECRET is not set"),
    ({"ANXIN_ALERTING_SECRET": "short-but-random-x9", "ANXIN_API_TOKENS": GOOD_TOKENS},
     "ANXIN_ALERTING_SECRET is too short (19 characters)"),
    ({"ANXIN_ALERTING_SECRET": GOOD_SECRET, "ANXIN_ALERTING_SECRETS_PREVIOUS": "old", "ANXIN_API_TOKENS": GOOD_TOKENS},
     "ANXIN_ALERTING_SECRETS_PREVIOUS is too short"),
    ({"ANXIN_ALERTING_SECRET": GOOD_SECRET, "ANXIN_API_TOKENS": "值班室:abc"}, "shorter than 16 characters"),
    ({"ANXIN_ALERTING_SECRET": GOOD_SECRET, "ANXIN_API_TOKENS": "no-colon-here"}, "name:token pairs"),
])
def test_gateway_refuses_to_start_without_real_secrets(tmp_path: Path, env: dict[str, str], says: str) -> None:
    out = gateway(tmp_path, **env)
    assert out.returncode == EXIT_BAD_SETTINGS, out.stderr
    assert says in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stdout == ""
    assert not (tmp_path / "x.db").exists()  # refused before touching anything


def test_gateway_with_real_secrets_starts(tmp_path: Path) -> None:
    """The same command with real secrets gets past the check and serves: the refusals above are the
    check's, not an accident of the set-up."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANXIN_")} | {
        "ANXIN_ALERTING_SECRET": GOOD_SECRET, "ANXIN_API_TOKENS": GOOD_TOKENS, "ANXIN_HTTP_PORT": str(port),
        "ANXIN_MQTT_PORT": str(free_port()), "ANXIN_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
        "ANXIN_TELEMETRY_SINK": "sqlite", "ANXIN_SQLITE_TELEMETRY_PATH": str(tmp_path / "t.db"),
        "ANXIN_SPOOL_DIR": str(tmp_path / "spool")}
    proc = subprocess.Popen([sys.executable, "-m", "program.cli", "gateway"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def serving() -> bool:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code in (200, 503)
            except httpx.TransportError:
                return False
        wait_for(serving, timeout=60, what="the gateway to serve")
        token = GOOD_TOKENS.split(":")[1]
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/incidents",
                         headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_check_secrets_without_alerting() -> None:
    tokens = {"值班室": "0123456789abcdef0123"}
    assert check_secrets(Settings(_env_file=None, alerting_secret=GOOD_SECRET, api_tokens=tokens)) is None  # type: ignore[call-arg]
    # no acknowledge links to sign when alerting is off; operator tokens are optional (people log in)
    assert check_secrets(Settings(_env_file=None, alerting_enabled=False, api_tokens=tokens)) is None  # type: ignore[call-arg]
    assert check_secrets(Settings(_env_file=None, alerting_enabled=False)) is None  # type: ignore[call-arg]
    assert "shorter than" in (check_secrets(Settings(_env_file=None, alerting_enabled=False,  # type: ignore[call-arg]
                                                      api_tokens={"x": "short"})) or "")


def test_rotation_and_expiry_of_links() -> None:
    old, new = b"o" * 32, b"n" * 32
    sent = make_token(old, 7, "police-siming")
    assert verify_token([new, old], sent) == (7, "police-siming")  # previous secret still verifies
    with pytest.raises(BadLink, match="signature"):
        verify_token([new], sent)  # ... until it is removed
    with pytest.raises(BadLink, match="signature"):
        verify_token([b""], make_token(b"", 7, "x"))  # an empty secret verifies nothing
    with pytest.raises(BadLink, match="expired"):
        verify_token([old], make_token(old, 7, "x", ttl_s=60, now=time.time() - 61))
    with pytest.raises(BadLink, match="signature"):
        verify_token([old], "7.x.1.\u00e9\u00e9")  # non-ASCII signature: refused, not a crash
    with pytest.raises(BadLink, match="malformed"):
        verify_token([old], "7.x.1")


def test_demo_makes_and_keeps_its_own_secrets(tmp_path: Path) -> None:
    first = demo_secrets(tmp_path / "demo")
    assert demo_secrets(tmp_path / "demo") == first  # links and tokens survive a demo restart
    assert demo_secrets(tmp_path / "other") != first  # random per data directory, not a shipped default
    assert stat.S_IMODE((tmp_path / "demo" / "secrets.json").stat().st_mode) == 0o600
    settings = Settings(_env_file=None, alerting_secret=first["alerting_secret"],  # type: ignore[call-arg]
                        api_tokens={"demo": first["api_token"]})
    assert check_secrets(settings) is None
