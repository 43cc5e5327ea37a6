"""Notification channels. Each ``send`` raises ChannelError on failure; the escalation engine retries,
records every attempt and escalates when a contact cannot be reached."""

from __future__ import annotations

import base64
import hashlib
import hmac
import smtplib
import time
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx
import orjson

from alerting.messages import Notification


class ChannelError(Exception):
    pass


class Channel(Protocol):
    name: str

    def send(self, address: str, secret: str, note: Notification) -> str:
        """Deliver; returns a short receipt (status line) for the delivery record."""


def post(client: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
    """POST; a transport failure or a non-2xx answer becomes ChannelError (the attempt failed)."""
    try:
        resp = client.post(url, **kwargs)
    except httpx.HTTPError as exc:
        raise ChannelError(f"{exc.__class__.__name__}: {exc}") from None
    if resp.status_code >= 300:
        raise ChannelError(f"HTTP {resp.status_code}: {resp.text[:200]}")
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


class WebhookChannel:
    """JSON POST with ``X-Anxin-Timestamp`` and ``X-Anxin-Signature`` headers."""

    name = "webhook"

    def __init__(self, timeout_s: float = 5.0) -> None:
        self._client = httpx.Client(timeout=timeout_s)

    def send(self, address: str, secret: str, note: Notification) -> str:
        body = orjson.dumps({**note.payload, "text": note.body})
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Anxin-Timestamp": ts}
        if secret:
            headers["X-Anxin-Signature"] = webhook_signature(secret, ts, body)
        return f"HTTP {post(self._client, address, content=body, headers=headers).status_code}"

    def close(self) -> None:
        self._client.close()


class EmailChannel:
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
        msg.set_content(note.body)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls()
                if self._username:
                    smtp.login(self._username, self._password or "")
                refused = smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise ChannelError(f"{exc.__class__.__name__}: {exc}") from None
        if refused:
            raise ChannelError(f"refused: {refused}")
        return "250 accepted"


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk custom robot signing: base64(HMAC-SHA256(key=secret, msg="<timestamp>\\n<secret>"))."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu custom bot signing: base64(HMAC-SHA256(key="<timestamp>\\n<secret>", msg=empty))."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


class _ChatRobot:
    """Group-chat robots answer HTTP 200 with an error code in the body; both are checked."""

    name = ""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self._client = httpx.Client(timeout=timeout_s)

    def _post(self, url: str, body: dict[str, object]) -> str:
        answer = post_json(self._client, url, content=orjson.dumps(body), headers={"Content-Type": "application/json"})
        code = answer.get("errcode", answer.get("code", answer.get("StatusCode", 0)))
        if code != 0:
            raise ChannelError(f"robot refused: {answer}")
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
        return self._post(url, {"msgtype": "text", "text": {"content": f"{note.title}\n{note.body}"}})


class WeComRobot(_ChatRobot):
    """https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=… (the key in the URL is the credential)."""

    name = "wecom"

    def send(self, address: str, secret: str, note: Notification) -> str:
        return self._post(address, {"msgtype": "text", "text": {"content": f"{note.title}\n{note.body}"}})


class FeishuRobot(_ChatRobot):
    """https://open.feishu.cn/open-apis/bot/v2/hook/…; with a secret, timestamp and sign go in the body."""

    name = "feishu"

    def send(self, address: str, secret: str, note: Notification) -> str:
        body: dict[str, object] = {"msg_type": "text", "content": {"text": f"{note.title}\n{note.body}"}}
        if secret:
            ts = int(time.time())
            body.update({"timestamp": str(ts), "sign": feishu_sign(secret, ts)})
        return self._post(address, body)
