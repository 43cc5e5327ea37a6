"""Notification channels. Each ``send`` raises ChannelError on failure; the escalation engine retries,
records every attempt and escalates when a contact cannot be reached."""

from __future__ import annotations

import hashlib
import hmac
import smtplib
import time
from email.message import EmailMessage
from typing import Protocol

import httpx
import orjson

from alerting.messages import Notification


class ChannelError(Exception):
    pass


class Channel(Protocol):
    name: str

    def send(self, address: str, secret: str, note: Notification) -> str:
        """Deliver; returns a short receipt (status line) for the delivery record."""


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
        try:
            resp = self._client.post(address, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ChannelError(f"{exc.__class__.__name__}: {exc}") from None
        if resp.status_code >= 300:
            raise ChannelError(f"HTTP {resp.status_code}: {resp.text[:200]}")
        return f"HTTP {resp.status_code}"

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
