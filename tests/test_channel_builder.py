"""build_channels: which channels the settings enable (each channel is tested on its own and end to end
through the gateway in test_alerting, test_sms_voice and test_sia_dc09)."""

from __future__ import annotations

from pathlib import Path

from alerting.channels import build_channels
from alerting.channels.email import EmailChannel
from alerting.channels.sms_aliyun import AliyunSms, AliyunVoice
from alerting.channels.sms_tencent import TencentSms, TencentVoice
from tests.harness import gateway_settings

ALWAYS = ["webhook", "dingtalk", "wecom", "feishu", "sia_dc09"]
SMS = {"sms_key_id": "id", "sms_key_secret": "k", "sms_sign_name": "s", "sms_template": "1"}


def names(tmp_path: Path, **overrides: str) -> list[str]:
    return [c.name for c in build_channels(gateway_settings(tmp_path, mqtt_port=1, **overrides))]


def test_without_smtp_or_sms_only_the_address_channels(tmp_path: Path) -> None:
    assert names(tmp_path) == ALWAYS


def test_smtp_host_adds_email(tmp_path: Path) -> None:
    channels = build_channels(gateway_settings(tmp_path, mqtt_port=1, smtp_host="127.0.0.1", smtp_port=2525))
    assert [c.name for c in channels] == [*ALWAYS, "email"]
    assert isinstance(channels[-1], EmailChannel)


def test_sms_provider_adds_sms_and_voice_only_with_a_voice_template(tmp_path: Path) -> None:
    assert names(tmp_path, sms_provider="aliyun", **SMS) == [*ALWAYS, "sms"]
    aliyun = build_channels(gateway_settings(tmp_path, mqtt_port=1, sms_provider="aliyun", voice_template="2", **SMS))
    assert [type(c) for c in aliyun[-2:]] == [AliyunSms, AliyunVoice]
    tencent = build_channels(gateway_settings(tmp_path, mqtt_port=1, sms_provider="tencent", voice_template="2",
                                              sms_app_id="3", voice_app_id="4", **SMS))
    assert [type(c) for c in tencent[-2:]] == [TencentSms, TencentVoice]
    assert [c.name for c in tencent] == [*ALWAYS, "sms", "voice"]
