"""`anxin decode` as a user runs it: a real subprocess, JSON lines out, clear errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from anxin.cli import EXIT_BAD_PROFILES, EXIT_MALFORMED, EXIT_NO_PROFILE


def anxin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anxin.cli", *args], capture_output=True, text=True, timeout=60)


def test_decode_prints_canonical_json_lines() -> None:
    out = anxin("decode", "--topic", "zigbee2mqtt/sens_smoke1",
                "--payload", '{"battery":"100.00","smoke":"true","last_seen":null}')
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    battery = next(x for x in lines if x.get("metric") == "battery")
    assert battery["value"] == 100.0 and battery["unit"] == "%" and battery["device_id"] == "sens_smoke1"
    smoke = next(x for x in lines if x.get("type") == "alarm.smoke")
    assert smoke["state"] == "active" and smoke["profile"] == "zigbee2mqtt-smoke"


def test_decode_unknown_topic_exits_with_clear_message() -> None:
    out = anxin("decode", "--topic", "nobody/listens/here", "--payload", "{}")
    assert out.returncode == EXIT_NO_PROFILE
    assert "no profile matches topic 'nobody/listens/here'" in out.stderr
    assert out.stdout == ""


def test_decode_malformed_payload_exits_non_zero() -> None:
    out = anxin("decode", "--topic", "zigbee2mqtt/x", "--payload", '{"smoke": tr')
    assert out.returncode == EXIT_MALFORMED
    assert "malformed JSON" in out.stderr


def test_decode_unknown_profile_name() -> None:
    out = anxin("decode", "--topic", "x", "--payload", "{}", "--profile", "no-such-model")
    assert out.returncode == EXIT_NO_PROFILE and "unknown profile 'no-such-model'" in out.stderr


def test_decode_bad_hex() -> None:
    out = anxin("decode", "--topic", "x", "--payload-hex", "zz")
    assert out.returncode == EXIT_MALFORMED and "not hexadecimal" in out.stderr


def test_decode_reports_invalid_profile_file(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("name: broken\ntopic: 'a/{device}'\ndevice_id: {topic: nope}\n"
                                          "readings: [{metric: temperature, path: t}]\n")
    out = anxin("decode", "--profiles", str(tmp_path), "--topic", "a/b", "--payload", "{}")
    assert out.returncode == EXIT_BAD_PROFILES
    assert "broken.yaml" in out.stderr and "device_id.topic 'nope'" in out.stderr


def test_decode_testing_a_new_profile(tmp_path: Path) -> None:
    """The README's "write your own profile" path: a new file, checked with `anxin decode --profiles`."""
    (tmp_path / "my-sensor.yaml").write_text(
        "name: my-sensor\nkind: env_monitor\ntopic: 'site/{device}/air'\ndevice_id: {topic: device}\n"
        "readings:\n  - {metric: temperature, path: 'sensor[\"temp.c\"]'}\n"
        "  - {metric: hcho, path: hcho_ug, unit: µg/m³}\n")
    out = anxin("decode", "--profiles", str(tmp_path), "--topic", "site/room 1/air",
                "--payload", '{"sensor": {"temp.c": 21.5}, "hcho_ug": 80}')
    assert out.returncode == 0, out.stderr
    got = {x["metric"]: x["value"] for x in map(json.loads, out.stdout.splitlines())}
    assert got == {"temperature": 21.5, "hcho": 0.08}
