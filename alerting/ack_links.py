"""Signed, expiring acknowledge links: ``/ack/<incident>.<contact>.<expiry>.<signature>``.

HMAC-SHA256 over the first three parts with the gateway's secret; a link works until its expiry
and only for the incident and contact it was made for. Rotation: the current secret signs new links;
previous secrets (``ANXIN_ALERTING_SECRETS_PREVIOUS``) still verify the links already sent until they
are removed from the list (after the link lifetime at most).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence


class BadLink(ValueError):
    pass


def _sign(secret: bytes, message: str) -> str:
    digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def make_token(secret: bytes, incident_id: int, contact_id: str, ttl_s: int = 24 * 3600,
               now: float | None = None) -> str:
    contact = base64.urlsafe_b64encode(contact_id.encode()).decode().rstrip("=")
    message = f"{incident_id}.{contact}.{int((now or time.time()) + ttl_s)}"
    return f"{message}.{_sign(secret, message)}"


def verify_token(secrets: Sequence[bytes], token: str, now: float | None = None) -> tuple[int, str]:
    """(incident id, contact id) of a token signed with one of ``secrets`` (current first, then the
    previous ones) and not expired; BadLink says why not."""
    try:
        incident, contact, expiry, signature = token.split(".")
        message = f"{incident}.{contact}.{expiry}"
        # every secret is tried (no early exit) so the time taken does not tell which one matched
        matches = [hmac.compare_digest(signature.encode(), _sign(s, message).encode()) for s in secrets if s]
        if not any(matches):
            raise BadLink("signature does not match")
        if int(expiry) < (now or time.time()):
            raise BadLink("link expired")
        contact_id = base64.urlsafe_b64decode(contact + "=" * (-len(contact) % 4)).decode()
        return int(incident), contact_id
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, BadLink):
            raise
        raise BadLink("malformed link") from None
