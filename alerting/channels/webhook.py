"""Signed JSON webhook (the police / fire / contractor endpoints)."""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
import orjson

from alerting.channels.base import post
from alerting.messages import Notification


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
