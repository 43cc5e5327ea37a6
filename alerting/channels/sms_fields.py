"""What SMS and voice providers get from a notification: the template variables and the provider's
pass-through field carrying the delivery key (shared by sms_aliyun and sms_tencent)."""

from __future__ import annotations

from alerting.messages import TYPE_NAMES, Notification


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
