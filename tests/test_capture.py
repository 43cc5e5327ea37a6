"""Splitting `mosquitto_sub -v` lines and counting a capture (the parts of `anxin decode --file`)."""

from __future__ import annotations

from gateway.capture import decode_capture, split_line, summary
from tests.profile_helpers import profile_set


def test_split_line() -> None:
    ps = profile_set()
    gas = "zigbee2mqtt/sensore perdita gas"
    assert split_line(gas + ' {"gas":true}', ps) == (gas, '{"gas":true}')
    assert split_line("zigbee2mqtt/door 1/availability offline", ps) == ("zigbee2mqtt/door 1/availability", "offline")
    assert split_line("tele/x/LWT Online", ps) == ("tele/x/LWT", "Online")
    assert split_line("nobody/listens here", ps) == ("nobody/listens", "here")
    assert split_line("just/a/topic", ps) == ("just/a/topic", "")


def test_capture_counts_and_assignment() -> None:
    lines = ['zigbee2mqtt/desk button {"action":"single","battery":100}\n', "\n", "# comment\n",
             "tele/x/LWT Offline\n", "somewhere/else/entirely {}\n"]
    reps = decode_capture(profile_set(), lines)
    assert [r.line for r in reps] == [1, 4, 5]
    assert reps[0].profile == "zigbee2mqtt-sos-button" and reps[0].dead_letter is None
    assert not [e for e in reps[0].events if e[1] == "alarm.panic"]  # "single" from an unknown model
    assert reps[1].events == [("x", "device.offline", "active")]
    assert reps[2].dead_letter == "no_profile"
    assigned = decode_capture(profile_set(), lines[:1], assigned={"desk button": "zigbee2mqtt-sos-single"})
    assert ("desk button", "alarm.panic", "active") in assigned[0].events
    text = summary(reps)
    assert "共 3 条消息 messages: 2 已解码 decoded (0 无内容 nothing to store)" in text
    assert "1 死信 dead letters (no_profile 1)" in text
