"""Notification channels, one module per channel; base.py has what they share (Channel, ChannelError, post)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from alerting.channels.base import Channel
from alerting.channels.email import EmailChannel
from alerting.channels.robots import DingTalkRobot, FeishuRobot, WeComRobot
from alerting.channels.sia_dc09 import SiaDc09Channel
from alerting.channels.sms_aliyun import ALIYUN_SMS_ENDPOINT, ALIYUN_VOICE_ENDPOINT, AliyunSms, AliyunVoice
from alerting.channels.sms_tencent import TENCENT_SMS_ENDPOINT, TENCENT_VOICE_ENDPOINT, TencentSms, TencentVoice
from alerting.channels.webhook import WebhookChannel

if TYPE_CHECKING:  # the settings only type the builder; alerting does not load the configuration
    from anxin.config import Settings


def build_channels(settings: Settings) -> list[Channel]:
    """Every channel the settings enable (a contact's ``channel`` names one). Adding a channel is its module
    plus one line here."""
    channels: list[Channel] = [WebhookChannel(), DingTalkRobot(), WeComRobot(), FeishuRobot(), SiaDc09Channel()]
    if settings.smtp_host:
        channels.append(EmailChannel(settings.smtp_host, settings.smtp_port, settings.smtp_sender,
                                     username=settings.smtp_username, password=settings.smtp_password,
                                     starttls=settings.smtp_starttls))
    if settings.sms_provider:
        sms, voice = make_sms_voice(
            settings.sms_provider, key_id=settings.sms_key_id, key_secret=settings.sms_key_secret,
            sign_name=settings.sms_sign_name, sms_template=settings.sms_template,
            voice_template=settings.voice_template, sms_app_id=settings.sms_app_id,
            voice_app_id=settings.voice_app_id, show_number=settings.voice_show_number, region=settings.sms_region,
            sms_endpoint=settings.sms_endpoint, voice_endpoint=settings.voice_endpoint)
        channels += [sms, voice] if settings.voice_template else [sms]
    return channels


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
