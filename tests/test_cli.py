"""`anxin decode` as a user runs it: a real subprocess, JSON lines out, clear errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from program.cli import EXIT_BAD_PROFILES, EXIT_DEAD_LETTERS, EXIT_MALFORMED, EXIT_NO_PROFILE, EXIT_USAGE


def anxin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "program.cli", *args], capture_output=True, text=True, timeout=60)


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


CAPTURE = """\
# mosquitto_sub -v -t 'zigbee2mqtt/#' -t 'tele/#' -t 'shellies/#'
zigbee2mqtt/bridge/state {"state":"online"}
zigbee2mqtt/kitchen leak {"water_leak":true,"battery":91,"battery_low":false}
zigbee2mqtt/door 1/availability online

tele/fridges/SENSOR {"Time":"2020-11-15T21:05:00","DS18B20-1":{"Id":"01183379C9FF","Temperature":4.9},\
"DS18B20-2":{"Id":"011833902FFF","Temperature":-18.1},"TempUnit":"C"}
zigbee2mqtt/lamp {"state":"ON","brightness":254}
zigbee2mqtt/broken {"smoke": tr
shellies/shellyflood-AABBCC/sensor/flood true
"""


def test_decode_file_reports_each_line_and_a_summary(tmp_path: Path) -> None:
    capture = tmp_path / "site.txt"
    capture.write_text(CAPTURE, encoding="utf-8")
    out = anxin("decode", "--file", str(capture))
    assert out.returncode == EXIT_DEAD_LETTERS, out.stderr  # two lines would be dead-lettered
    lines = out.stdout.splitlines()
    by_line = {ln.split(" ", 1)[0]: ln for ln in lines if ln.startswith("L")}
    assert set(by_line) == {"L2", "L3", "L4", "L6", "L7", "L8", "L9"}  # comment and blank lines skipped
    assert "zigbee2mqtt-water-leak [kitchen leak]" in by_line["L3"] and "alarm.water_leak active" in by_line["L3"]
    assert "zigbee2mqtt-availability [door 1]" in by_line["L4"]  # a friendly name with a space, text payload
    assert "fridges/01183379C9FF" in by_line["L6"] and "temperature=-18.1 °C" in by_line["L6"]
    assert "死信 dead letter (no_profile)" in by_line["L7"] and "fits none" in by_line["L7"]
    assert "死信 dead letter (malformed)" in by_line["L8"] and "malformed JSON" in by_line["L8"]
    assert "shelly-gen1-flood [shellyflood-AABBCC]" in by_line["L9"]
    summary = "\n".join(ln for ln in lines if not ln.startswith("L"))
    assert "共 7 条消息 messages: 5 已解码 decoded" in summary and "2 死信 dead letters" in summary
    assert "alarm.water_leak active ×2" in summary  # the Zigbee leak and the Shelly flood


def test_decode_file_json_lines(tmp_path: Path) -> None:
    capture = tmp_path / "ok.txt"
    capture.write_text('zigbee2mqtt/sos 1 {"action":"emergency","battery":100}\n', encoding="utf-8")
    out = anxin("decode", "--file", str(capture), "--json")
    assert out.returncode == 0, out.stderr
    (rep,) = [json.loads(x) for x in out.stdout.splitlines()]
    assert (rep["line"], rep["topic"], rep["profile"], rep["device_id"]) == (1, "zigbee2mqtt/sos 1",
                                                                            "zigbee2mqtt-sos-button", "sos 1")
    assert {"device_id": "sos 1", "type": "alarm.panic", "state": "active"} in rep["events"]
    assert rep["dead_letter"] is None and "1 已解码 decoded" in out.stderr


def test_decode_file_missing_is_one_clear_line(tmp_path: Path) -> None:
    out = anxin("decode", "--file", str(tmp_path / "nope.txt"))
    assert out.returncode == EXIT_USAGE and out.stderr.count("\n") == 1 and "nope.txt" in out.stderr


def test_decode_without_topic_is_a_usage_error() -> None:
    out = anxin("decode", "--payload", "{}")
    assert out.returncode == EXIT_USAGE and "--topic is required" in out.stderr


def test_readme_walkthrough_adding_a_zigbee2mqtt_device_is_one_yaml_file(tmp_path: Path) -> None:
    """README "Adding a device": the capture decodes with the generic CO profile (self-check unread);
    the README's YAML, added alone to a copy of the profile directory, makes it a test."""
    import re
    import shutil

    from gateway.profiles import DEFAULT_PROFILE_DIR

    profiles = tmp_path / "profiles"
    shutil.copytree(DEFAULT_PROFILE_DIR, profiles)
    (profiles / "zigbee2mqtt-nous-e12-co.yaml").unlink()
    capture = tmp_path / "site.txt"
    capture.write_text(
        'zigbee2mqtt/boiler co {"battery_state":"low","carbon_monoxide":false,"carbon_monoxide_value":0,'
        '"end_of_life":false,"fault":false,"test":"idle","testing":true,"warming_up":false,"linkquality":120}\n',
        encoding="utf-8")
    before = anxin("decode", "--profiles", str(profiles), "--file", str(capture), "--json")
    assert before.returncode == 0, before.stderr
    (rep,) = [json.loads(x) for x in before.stdout.splitlines()]
    assert rep["profile"] == "zigbee2mqtt-co" and not [e for e in rep["events"] if e["type"] == "test"]

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Adding a device"):]
    yaml_text = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert yaml_text is not None
    (profiles / "nous-e12.yaml").write_text(re.sub(r"^   ", "", yaml_text.group(1), flags=re.M), encoding="utf-8")
    after = anxin("decode", "--profiles", str(profiles), "--file", str(capture), "--json")
    assert after.returncode == 0, after.stderr
    (rep,) = [json.loads(x) for x in after.stdout.splitlines()]
    assert rep["profile"] == "zigbee2mqtt-nous-e12-co"
    assert {(e["type"], e["state"]) for e in rep["events"]} == {
        ("test", "active"), ("fault.sensor", "clear"), ("fault.battery_low", "active")}
