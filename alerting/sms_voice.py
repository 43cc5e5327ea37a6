"""SMS and voice-call channels through Aliyun (Dysmsapi / Dyvmsapi) and Tencent Cloud (SMS / VMS) HTTP APIs.

No vendor SDK: the request signing is implemented here from the providers' published algorithms and
checked against their worked examples in tests/test_sms_voice.py. Every provider answers refusals
(bad template, rate limit, empty balance) with HTTP 200 and an error code in the JSON body, so each
channel inspects the body and raises ChannelError unless the provider says the message was accepted;
a refusal that retrying cannot fix (template, signature, balance, number, credentials) is permanent.
The delivery key travels as the providers' own pass-through field (Aliyun ``OutId``, Tencent
``SessionContext``), returned in their delivery receipts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode

import httpx
import orjson

from alerting.channels import Channel, ChannelError, post_json
from alerting.messages import TYPE_NAMES, Notification

ALIYUN_SMS_ENDPOINT = "https://dysmsapi.aliyuncs.com/"
ALIYUN_VOICE_ENDPOINT = "https://dyvmsapi.aliyuncs.com/"
TENCENT_SMS_ENDPOINT = "https://sms.tencentcloudapi.com/"
TENCENT_VOICE_ENDPOINT = "https://vms.tencentcloudapi.com/"
TC3_CONTENT_TYPE = "application/json; charset=utf-8"


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

# Aliyun names the caller's mistakes isv.* (template, signature, balance, number, daily limit) and its
# own isp.*; only flow control among the caller's codes passes with time.
ALIYUN_RETRYABLE = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "Throttling", "Throttling.User", "ServiceUnavailable",
                              "InternalError"})
ALIYUN_PERMANENT_PREFIXES = ("isv.", "SignatureDoesNotMatch", "InvalidAccessKeyId", "Forbidden", "MissingParameter",
                             "InvalidParameter", "IncompleteSignature", "InvalidVersion")
# Tencent: template/signature/balance are FailedOperation.*, credentials AuthFailure.*, numbers and
# parameters Invalid*/Missing*; rate limits (LimitExceeded.*, RequestLimitExceeded) and InternalError.* pass,
# except the per-number daily limit, which does not pass today.
TENCENT_PERMANENT_PREFIXES = ("FailedOperation", "AuthFailure", "InvalidParameter", "MissingParameter",
                              "UnauthorizedOperation", "UnsupportedOperation", "UnknownParameter")
TENCENT_PERMANENT = frozenset({"LimitExceeded.PhoneNumberDailyLimit", "LimitExceeded.DailyLimit",
                               "LimitExceeded.AppDailyLimit"})


def aliyun_permanent(code: str) -> bool:
    return code not in ALIYUN_RETRYABLE and code.startswith(ALIYUN_PERMANENT_PREFIXES)


def tencent_permanent(code: str) -> bool:
    return code in TENCENT_PERMANENT or code.startswith(TENCENT_PERMANENT_PREFIXES)


# --------------------------------------------------------------------------------------------- template data


def template_fields(note: Notification) -> dict[str, str]:
    """The four values every SMS/voice template gets: event type (zh), institution, room, incident id.

    Templates are approved by the provider with fixed variables, so the text is built there, not here.
    A drill is marked in the type so nobody on the phone mistakes it for a real alarm.
    """
    p = note.payload
    event_type = str(p.get("type", ""))
    zh = TYPE_NAMES.get(event_type, (event_type, event_type))[0]
    return {
        "type": f"演练{zh}" if p.get("drill") else zh,
        "institution": str(p.get("institution", "")),
        "room": str(p.get("room") or p.get("device") or "-"),
        "incident": str(note.incident_id),
    }


def passthrough(field: str, note: Notification) -> dict[str, str]:
    """The provider's pass-through field carrying the delivery key (left out when there is none)."""
    return {field: note.delivery_key} if note.delivery_key else {}


def _e164_cn(number: str) -> str:
    """Tencent wants +<country><number>; bare numbers here are mainland China numbers."""
    number = number.strip()
    return number if number.startswith("+") else f"+86{number}"


# --------------------------------------------------------------------------------------------- Aliyun


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


# --------------------------------------------------------------------------------------------- Tencent


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


# --------------------------------------------------------------------------------------------- factory


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
