"""SMS and voice calls through Aliyun (Dysmsapi / Dyvmsapi) HTTP APIs.

No vendor SDK: the request signing is implemented here from Aliyun's published algorithm and checked
against its worked example in tests/test_sms_voice.py. Aliyun answers refusals (bad template, rate limit,
empty balance) with HTTP 200 and an error code in the JSON body, so each channel inspects the body and
raises ChannelError unless Aliyun says the message was accepted; a refusal that retrying cannot fix
(template, signature, balance, number, credentials) is permanent. The delivery key travels as Aliyun's
pass-through field ``OutId``, returned in its delivery receipts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson

from alerting.channels.base import ChannelError, post_json
from alerting.channels.sms_fields import passthrough, template_fields
from alerting.messages import Notification

ALIYUN_SMS_ENDPOINT = "https://dysmsapi.aliyuncs.com/"
ALIYUN_VOICE_ENDPOINT = "https://dyvmsapi.aliyuncs.com/"


# --------------------------------------------------------------------------------------------- signing


def aliyun_percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun RPC V1 requires it (UTF-8; only A-Z a-z 0-9 - _ . ~ left as is).

    The doc phrases it as "URL-encode, then replace + with %20, * with %2A and %7E with ~"; quote() with
    no safe characters already yields exactly that (space -> %20, * -> %2A, ~ kept).
    """
    return quote(value, safe="")


def aliyun_string_to_sign(params: Mapping[str, str], method: str = "POST") -> str:
    """``<METHOD>&%2F&<percent-encoded canonical query>``; the Signature parameter itself is excluded."""
    canonical = "&".join(
        f"{aliyun_percent_encode(k)}={aliyun_percent_encode(v)}" for k, v in sorted(params.items()) if k != "Signature"
    )
    return f"{method}&{aliyun_percent_encode('/')}&{aliyun_percent_encode(canonical)}"


def aliyun_rpc_signature(params: Mapping[str, str], access_key_secret: str, method: str = "POST") -> str:
    """Aliyun RPC signature V1 (SignatureMethod HMAC-SHA1, SignatureVersion 1.0).

    Follows the Dysmsapi "HTTP协议及签名" doc (help.aliyun.com/document_detail/56189.html) and the RPC
    "签名机制" doc: parameters sorted by name, each name and value percent-encoded, joined with ``&``;
    StringToSign = METHOD + "&" + pe("/") + "&" + pe(canonical query); signature =
    base64(HMAC-SHA1(key=AccessKeySecret + "&", StringToSign)).
    """
    mac = hmac.new(f"{access_key_secret}&".encode(), aliyun_string_to_sign(params, method).encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


# --------------------------------------------------------------------------------------------- refusals

# Aliyun names the caller's mistakes isv.* (template, signature, balance, number, daily limit) and its
# own isp.*; only flow control among the caller's codes passes with time.
ALIYUN_RETRYABLE = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "Throttling", "Throttling.User", "ServiceUnavailable",
                              "InternalError"})
ALIYUN_PERMANENT_PREFIXES = ("isv.", "SignatureDoesNotMatch", "InvalidAccessKeyId", "Forbidden", "MissingParameter",
                             "InvalidParameter", "IncompleteSignature", "InvalidVersion")


def aliyun_permanent(code: str) -> bool:
    return code not in ALIYUN_RETRYABLE and code.startswith(ALIYUN_PERMANENT_PREFIXES)


# --------------------------------------------------------------------------------------------- channels


class _AliyunRpc:
    """POST with form-encoded parameters, signed with RPC V1 over the same parameters (method POST)."""

    name = ""
    action = ""

    def __init__(self, access_key_id: str, access_key_secret: str, endpoint: str, timeout_s: float) -> None:
        self._key_id, self._secret, self._endpoint = access_key_id, access_key_secret, endpoint
        self._client = httpx.Client(timeout=timeout_s)

    def _call(self, params: Mapping[str, str]) -> dict[str, Any]:
        signed = {
            "AccessKeyId": self._key_id,
            "Action": self.action,
            "Format": "JSON",
            "RegionId": "cn-hangzhou",
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,  # replay protection: must differ on every request
            "SignatureVersion": "1.0",
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
            **params,
        }
        signed["Signature"] = aliyun_rpc_signature(signed, self._secret, "POST")
        answer = post_json(self._client, self._endpoint, content=urlencode(signed).encode(),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        code = str(answer.get("Code"))
        if code != "OK":
            raise ChannelError(f"aliyun {self.action} refused: {code} {answer.get('Message')}",
                               permanent=aliyun_permanent(code))
        return answer

    def close(self) -> None:
        self._client.close()


class AliyunSms(_AliyunRpc):
    """Dysmsapi SendSms (2017-05-25): PhoneNumbers, SignName, TemplateCode, TemplateParam (JSON)."""

    name = "sms"
    action = "SendSms"

    def __init__(self, access_key_id: str, access_key_secret: str, sign_name: str, template_code: str, *,
                 endpoint: str = ALIYUN_SMS_ENDPOINT, timeout_s: float = 10.0) -> None:
        super().__init__(access_key_id, access_key_secret, endpoint, timeout_s)
        self._sign_name, self._template = sign_name, template_code

    def send(self, address: str, secret: str, note: Notification) -> str:
        answer = self._call({
            "PhoneNumbers": address,
            "SignName": self._sign_name,
            "TemplateCode": self._template,
            "TemplateParam": orjson.dumps(template_fields(note)).decode(),
            **passthrough("OutId", note),
        })
        return f"OK BizId {answer.get('BizId', '')}"


class AliyunVoice(_AliyunRpc):
    """Dyvmsapi SingleCallByTts (2017-05-25): CalledNumber, CalledShowNumber, TtsCode, TtsParam, PlayTimes.

    An empty ``show_number`` leaves CalledShowNumber out, which the doc defines as the public number pool.
    """

    name = "voice"
    action = "SingleCallByTts"

    def __init__(self, access_key_id: str, access_key_secret: str, tts_code: str, show_number: str = "", *,
                 play_times: int = 3, endpoint: str = ALIYUN_VOICE_ENDPOINT, timeout_s: float = 10.0) -> None:
        super().__init__(access_key_id, access_key_secret, endpoint, timeout_s)
        self._tts_code, self._show_number, self._play_times = tts_code, show_number, play_times

    def send(self, address: str, secret: str, note: Notification) -> str:
        params = {
            "CalledNumber": address,
            "TtsCode": self._tts_code,
            "TtsParam": orjson.dumps(template_fields(note)).decode(),
            "PlayTimes": str(self._play_times),
            **passthrough("OutId", note),
        }
        if self._show_number:
            params["CalledShowNumber"] = self._show_number
        answer = self._call(params)
        return f"OK CallId {answer.get('CallId', '')}"
