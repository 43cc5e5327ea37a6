"""SMTP email."""

from __future__ import annotations

import hashlib
import re
import smtplib
from email.message import EmailMessage

from alerting.channels.base import ChannelError
from alerting.messages import Notification


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
