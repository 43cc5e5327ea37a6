"""Notification channels, one module per channel; base.py has what they share (Channel, ChannelError, post)."""

from __future__ import annotations

from typing import Literal

from alerting.channels.base import Channel
from alerting.channels.sms_aliyun import ALIYUN_SMS_ENDPOINT, ALIYUN_VOICE_ENDPOINT, AliyunSms, AliyunVoice
from alerting.channels.sms_tencent import TENCENT_SMS_ENDPOINT, TENCENT_VOICE_ENDPOINT, TencentSms, TencentVoice


def make_sms_voice(provider: Literal["aliyun", "tencent"], *, key_id: str, key_secret: str, sign_name: str,
                   sms_template: str, voice_template: str, sms_app_id: str = "", voice_app_id: str = "",
                   show_number: str = "", region: str = "ap-guangzhou", play_times: int = 3,
                   timeout_s: float = 10.0, sms_endpoint: str = "", voice_endpoint: str = "") -> list[Channel]:
    """The ``sms`` and ``voice`` channels of one provider (app ids are Tencent's, show_number Aliyun's);
    the endpoints default to the provider's public ones."""
    if provider == "aliyun":
        return [AliyunSms(key_id, key_secret, sign_name, sms_template, timeout_s=timeout_s,
                          endpoint=sms_endpoint or ALIYUN_SMS_ENDPOINT),
                AliyunVoice(key_id, key_secret, voice_template, show_number, play_times=play_times,
                            timeout_s=timeout_s, endpoint=voice_endpoint or ALIYUN_VOICE_ENDPOINT)]
    if provider == "tencent":
        return [TencentSms(key_id, key_secret, sms_app_id, sign_name, sms_template, region=region,
                           timeout_s=timeout_s, endpoint=sms_endpoint or TENCENT_SMS_ENDPOINT),
                TencentVoice(key_id, key_secret, voice_app_id, voice_template, play_times=play_times,
                             region=region, timeout_s=timeout_s, endpoint=voice_endpoint or TENCENT_VOICE_ENDPOINT)]
    raise ValueError(f"unknown SMS/voice provider {provider!r}")
