"""SMS and voice calls through Tencent Cloud (SMS / VMS) HTTP APIs.

No vendor SDK: the request signing is implemented here from Tencent Cloud's published algorithm and
checked against its worked example in tests/test_sms_voice.py. Tencent Cloud answers refusals (bad
template, rate limit, empty balance) with HTTP 200 and an error code in the JSON body, so each channel
inspects the body and raises ChannelError unless Tencent says the message was accepted; a refusal that
retrying cannot fix (template, signature, balance, number, credentials) is permanent. The delivery key
travels as Tencent's pass-through field ``SessionContext``, returned in its delivery receipts.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from alerting.channels.base import ChannelError, post_json
from alerting.channels.sms_fields import passthrough, template_fields
from alerting.messages import Notification

TENCENT_SMS_ENDPOINT = "https://sms.tencentcloudapi.com/"
TENCENT_VOICE_ENDPOINT = "https://vms.tencentcloudapi.com/"
TC3_CONTENT_TYPE = "application/json; charset=utf-8"


# --------------------------------------------------------------------------------------------- signing


def tc3_canonical_request(method: str, host: str, payload: bytes, content_type: str = TC3_CONTENT_TYPE,
                          canonical_query: str = "") -> str:
    """CanonicalRequest of Tencent Cloud "签名方法 v3" step 1, signing the two required headers only."""
    return "\n".join([
        method, "/", canonical_query,
        f"content-type:{content_type.strip().lower()}\nhost:{host.strip().lower()}\n",
        "content-type;host",
        hashlib.sha256(payload).hexdigest(),
    ])


def _tc3_date(timestamp: int) -> str:
    """The credential scope date: the UTC date of the timestamp (not local)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def tc3_string_to_sign(timestamp: int, service: str, canonical_request: str) -> str:
    """StringToSign of "签名方法 v3" step 2."""
    date = _tc3_date(timestamp)
    hashed = hashlib.sha256(canonical_request.encode()).hexdigest()
    return f"TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n{hashed}"


def tc3_signature(secret_key: str, timestamp: int, service: str, string_to_sign: str) -> str:
    """Tencent Cloud TC3-HMAC-SHA256 (cloud.tencent.com "签名方法 v3", e.g. /document/api/213/30654) step 3.

    Derived key chain: SecretDate = HMAC_SHA256("TC3" + SecretKey, Date); SecretService =
    HMAC_SHA256(SecretDate, Service); SecretSigning = HMAC_SHA256(SecretService, "tc3_request");
    Signature = hex(HMAC_SHA256(SecretSigning, StringToSign)).
    """
    date = _tc3_date(timestamp)
    key = hmac.new(f"TC3{secret_key}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (service, "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def tc3_authorization(secret_id: str, secret_key: str, service: str, host: str, payload: bytes, timestamp: int,
                      content_type: str = TC3_CONTENT_TYPE, method: str = "POST") -> str:
    """The ``Authorization`` header of "签名方法 v3" step 4 for a POST of ``payload`` to ``host``."""
    canonical = tc3_canonical_request(method, host, payload, content_type)
    signature = tc3_signature(secret_key, timestamp, service, tc3_string_to_sign(timestamp, service, canonical))
    date = _tc3_date(timestamp)
    return (f"TC3-HMAC-SHA256 Credential={secret_id}/{date}/{service}/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature}")


# --------------------------------------------------------------------------------------------- refusals

# Tencent: template/signature/balance are FailedOperation.*, credentials AuthFailure.*, numbers and
# parameters Invalid*/Missing*; rate limits (LimitExceeded.*, RequestLimitExceeded) and InternalError.* pass,
# except the per-number daily limit, which does not pass today.
TENCENT_PERMANENT_PREFIXES = ("FailedOperation", "AuthFailure", "InvalidParameter", "MissingParameter",
                              "UnauthorizedOperation", "UnsupportedOperation", "UnknownParameter")
TENCENT_PERMANENT = frozenset({"LimitExceeded.PhoneNumberDailyLimit", "LimitExceeded.DailyLimit",
                               "LimitExceeded.AppDailyLimit"})


def tencent_permanent(code: str) -> bool:
    return code in TENCENT_PERMANENT or code.startswith(TENCENT_PERMANENT_PREFIXES)


def _e164_cn(number: str) -> str:
    """Tencent wants +<country><number>; bare numbers here are mainland China numbers."""
    number = number.strip()
    return number if number.startswith("+") else f"+86{number}"


# --------------------------------------------------------------------------------------------- channels


class _TencentApi:
    """JSON POST with X-TC-* headers and a TC3-HMAC-SHA256 Authorization header."""

    name = ""
    service = ""
    version = ""
    action = ""

    def __init__(self, secret_id: str, secret_key: str, region: str, endpoint: str, timeout_s: float) -> None:
        self._secret_id, self._secret_key, self._region = secret_id, secret_key, region
        self._endpoint = endpoint
        # The signed host must be the Host header actually sent (port included when the endpoint has one).
        self._host = httpx.URL(endpoint).netloc.decode()
        self._client = httpx.Client(timeout=timeout_s)

    def _call(self, body: Mapping[str, Any]) -> dict[str, Any]:
        payload = orjson.dumps(body)
        ts = int(time.time())
        headers = {
            "Authorization": tc3_authorization(self._secret_id, self._secret_key, self.service, self._host,
                                               payload, ts),
            "Content-Type": TC3_CONTENT_TYPE,
            "Host": self._host,
            "X-TC-Action": self.action,
            "X-TC-Timestamp": str(ts),
            "X-TC-Version": self.version,
            "X-TC-Region": self._region,
        }
        answer = post_json(self._client, self._endpoint, content=payload, headers=headers)
        response = answer.get("Response")
        if not isinstance(response, dict):
            raise ChannelError(f"tencent {self.action}: no Response in answer: {str(answer)[:200]}")
        error = response.get("Error")
        if error:
            code, msg = (error.get("Code"), error.get("Message")) if isinstance(error, dict) else (error, "")
            raise ChannelError(f"tencent {self.action} refused: {code} {msg}", permanent=tencent_permanent(str(code)))
        return response

    def close(self) -> None:
        self._client.close()


class TencentSms(_TencentApi):
    """SMS API 2021-01-11 SendSms: PhoneNumberSet, SmsSdkAppId, SignName, TemplateId, TemplateParamSet.

    Template variables are positional ({1}..{4}): type, institution, room, incident id.
    """

    name = "sms"
    service = "sms"
    version = "2021-01-11"
    action = "SendSms"

    def __init__(self, secret_id: str, secret_key: str, sdk_app_id: str, sign_name: str, template_id: str, *,
                 region: str = "ap-guangzhou", endpoint: str = TENCENT_SMS_ENDPOINT, timeout_s: float = 10.0) -> None:
        super().__init__(secret_id, secret_key, region, endpoint, timeout_s)
        self._app_id, self._sign_name, self._template = sdk_app_id, sign_name, template_id

    def send(self, address: str, secret: str, note: Notification) -> str:
        response = self._call({
            "PhoneNumberSet": [_e164_cn(address)],
            "SmsSdkAppId": self._app_id,
            "SignName": self._sign_name,
            "TemplateId": self._template,
            "TemplateParamSet": list(template_fields(note).values()),
            **passthrough("SessionContext", note),
        })
        # The request can succeed while a number is refused: each entry carries its own Code.
        statuses = response.get("SendStatusSet") or []
        failed = [s for s in statuses if not isinstance(s, dict) or s.get("Code") != "Ok"]
        if not statuses or failed:
            codes = [str(s.get("Code")) for s in failed if isinstance(s, dict)]
            detail = "; ".join(f"{s.get('Code')} {s.get('Message')}" for s in failed if isinstance(s, dict))
            raise ChannelError(f"tencent SendSms refused: {detail or 'empty SendStatusSet'}",
                               permanent=bool(codes) and all(tencent_permanent(c) for c in codes))
        return f"Ok SerialNo {statuses[0].get('SerialNo', '')}"


class TencentVoice(_TencentApi):
    """VMS API 2020-09-02 SendTtsVoice: TemplateId, TemplateParamSet, CalledNumber, VoiceSdkAppid, PlayTimes."""

    name = "voice"
    service = "vms"
    version = "2020-09-02"
    action = "SendTtsVoice"

    def __init__(self, secret_id: str, secret_key: str, voice_sdk_app_id: str, template_id: str, *,
                 play_times: int = 3, region: str = "ap-guangzhou", endpoint: str = TENCENT_VOICE_ENDPOINT,
                 timeout_s: float = 10.0) -> None:
        super().__init__(secret_id, secret_key, region, endpoint, timeout_s)
        self._app_id, self._template, self._play_times = voice_sdk_app_id, template_id, play_times

    def send(self, address: str, secret: str, note: Notification) -> str:
        response = self._call({
            "TemplateId": self._template,
            "TemplateParamSet": list(template_fields(note).values()),
            "CalledNumber": _e164_cn(address),
            "VoiceSdkAppid": self._app_id,
            "PlayTimes": self._play_times,
            **passthrough("SessionContext", note),
        })
        status = response.get("SendStatus")
        call_id = status.get("CallId", "") if isinstance(status, dict) else ""
        return f"OK CallId {call_id}"
