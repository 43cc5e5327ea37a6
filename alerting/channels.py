"""Notification channels. Each ``send`` raises ChannelError on failure, marked permanent when retrying
cannot help (the escalation engine then moves on at once instead of retrying); it records every attempt
and escalates when a contact cannot be reached. Every message carries its delivery key (the same for
every attempt of one step to one contact) so a receiver can tell a repeat."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import smtplib
import time
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx
import orjson

from alerting.messages import Notification


class ChannelError(Exception):
    """A failed attempt. ``permanent``: it cannot succeed by retrying (a 4xx answer other than 408/429,
    a provider refusing the template, signature or balance, a bad address)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


RETRYABLE_4XX = frozenset({408, 429})  # request timeout, too many requests: worth another try


def http_permanent(status: int) -> bool:
    """A 3xx (a moved address; redirects are not followed) or 4xx other than 408/429 will not change."""
    return 300 <= status < 500 and status not in RETRYABLE_4XX


class Channel(Protocol):
    name: str

    def send(self, address: str, secret: str, note: Notification) -> str:
        """Deliver; returns a short receipt (status line) for the delivery record."""


def post(client: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
    """POST; a transport failure or a non-2xx answer becomes ChannelError (the attempt failed)."""
    try:
        resp = client.post(url, **kwargs)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:  # a bad address
        raise ChannelError(f"{exc.__class__.__name__}: {exc}", permanent=True) from None
    except httpx.HTTPError as exc:
        raise ChannelError(f"{exc.__class__.__name__}: {exc}") from None
    if resp.status_code >= 300:
        raise ChannelError(f"HTTP {resp.status_code}: {resp.text[:200]}", permanent=http_permanent(resp.status_code))
    return resp


def post_json(client: httpx.Client, url: str, **kwargs: Any) -> dict[str, Any]:
    """``post`` for APIs that answer a JSON object (and may refuse inside an HTTP 200: callers check it)."""
    resp = post(client, url, **kwargs)
    try:
        answer = resp.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ChannelError(f"HTTP {resp.status_code}, not a JSON object: {resp.text[:200]}")
    return answer


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>`` (timestamp binds against replay)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


DELIVERY_KEY_HEADER = "X-Anxin-Delivery-Key"


class WebhookChannel:
    """JSON POST with ``X-Anxin-Timestamp``, ``X-Anxin-Signature`` and ``X-Anxin-Delivery-Key`` headers
    (the key is in the body's ``delivery_key`` too)."""

    name = "webhook"

    def __init__(self, timeout_s: float = 5.0) -> None:
        self._client = httpx.Client(timeout=timeout_s)

    def send(self, address: str, secret: str, note: Notification) -> str:
        body = orjson.dumps({**note.payload, "text": note.body, "delivery_key": note.delivery_key})
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Anxin-Timestamp": ts, DELIVERY_KEY_HEADER: note.delivery_key}
        if secret:
            headers["X-Anxin-Signature"] = webhook_signature(secret, ts, body)
        return f"HTTP {post(self._client, address, content=body, headers=headers).status_code}"

    def close(self) -> None:
        self._client.close()


def message_id(delivery_key: str) -> str:
    """A Message-ID derived from the delivery key only: every attempt of a step to a contact has the same
    one, so mail systems and people can tell a repeat (the hash keeps ids of unusual contact ids apart)."""
    readable = re.sub(r"[^A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]", "_", delivery_key).strip(".") or "x"
    return f"<anxin.{readable}.{hashlib.sha256(delivery_key.encode()).hexdigest()[:12]}@delivery.anxin>"


class EmailChannel:
    """SMTP; ``Message-ID`` and ``X-Anxin-Delivery-Key`` come from the delivery key. A 5xx refusal is permanent."""

    name = "email"

    def __init__(self, host: str, port: int, sender: str, *, username: str | None = None,
                 password: str | None = None, starttls: bool = False, timeout_s: float = 10.0) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._username, self._password, self._starttls = username, password, starttls
        self._timeout = timeout_s

    def send(self, address: str, secret: str, note: Notification) -> str:
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = address
        msg["Subject"] = note.title
        if note.delivery_key:
            msg["Message-ID"] = message_id(note.delivery_key)
            msg["X-Anxin-Delivery-Key"] = note.delivery_key
        msg.set_content(note.body)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls()
                if self._username:
                    smtp.login(self._username, self._password or "")
                refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise ChannelError(f"recipient refused: {exc.recipients}", permanent=all(c >= 500 for c in codes)) from None
        except smtplib.SMTPResponseException as exc:  # 5xx: the server will not take it; 4xx: try again
            raise ChannelError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", permanent=exc.smtp_code >= 500) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise ChannelError(f"{exc.__class__.__name__}: {exc}") from None
        if refused:
            raise ChannelError(f"refused: {refused}", permanent=all(c >= 500 for c, _ in refused.values()))
        return "250 accepted"


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk custom robot signing: base64(HMAC-SHA256(key=secret, msg="<timestamp>\\n<secret>"))."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu custom bot signing: base64(HMAC-SHA256(key="<timestamp>\\n<secret>", msg=empty))."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


# Robot refusals that retrying cannot fix: bad signature / keyword / IP (DingTalk 310000, Feishu 19021,
# 19022, 19024), invalid token or webhook address (DingTalk 300001, 400013, WeCom 93000, 40008),
# malformed request (Feishu 9499). Anything else (rate limits, busy) is retried.
ROBOT_PERMANENT_CODES = frozenset({310000, 300001, 400013, 93000, 40008, 9499, 19021, 19022, 19024})


def robot_text(note: Notification) -> str:
    """Robots post into a group chat: people read the delivery key in the text's last line."""
    return f"{note.title}\n{note.body}"


class _ChatRobot:
    """Group-chat robots answer HTTP 200 with an error code in the body; both are checked."""

    name = ""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self._client = httpx.Client(timeout=timeout_s)

    def _post(self, url: str, body: dict[str, object]) -> str:
        answer = post_json(self._client, url, content=orjson.dumps(body), headers={"Content-Type": "application/json"})
        code = answer.get("errcode", answer.get("code", answer.get("StatusCode", 0)))
        if code != 0:
            raise ChannelError(f"robot refused: {answer}", permanent=code in ROBOT_PERMANENT_CODES)
        return "2xx, code 0"

    def close(self) -> None:
        self._client.close()


class DingTalkRobot(_ChatRobot):
    """https://oapi.dingtalk.com/robot/send?access_token=…; with a secret, &timestamp=&sign= are added."""

    name = "dingtalk"

    def send(self, address: str, secret: str, note: Notification) -> str:
        url = address
        if secret:
            ts = int(time.time() * 1000)
            url += ("&" if "?" in url else "?") + urlencode({"timestamp": ts, "sign": dingtalk_sign(secret, ts)})
        return self._post(url, {"msgtype": "text", "text": {"content": robot_text(note)}})


class WeComRobot(_ChatRobot):
    """https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=… (the key in the URL is the credential)."""

    name = "wecom"

    def send(self, address: str, secret: str, note: Notification) -> str:
        return self._post(address, {"msgtype": "text", "text": {"content": robot_text(note)}})


class FeishuRobot(_ChatRobot):
    """https://open.feishu.cn/open-apis/bot/v2/hook/…; with a secret, timestamp and sign go in the body."""

    name = "feishu"

    def send(self, address: str, secret: str, note: Notification) -> str:
        body: dict[str, object] = {"msg_type": "text", "content": {"text": robot_text(note)}}
        if secret:
            ts = int(time.time())
            body.update({"timestamp": str(ts), "sign": feishu_sign(secret, ts)})
        return self._post(address, body)
