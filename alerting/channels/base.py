"""What every notification channel shares. Each ``send`` raises ChannelError on failure, marked permanent
when retrying cannot help (the escalation engine then moves on at once instead of retrying); it records
every attempt and escalates when a contact cannot be reached. Every message carries its delivery key (the
same for every attempt of one step to one contact) so a receiver can tell a repeat."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

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
