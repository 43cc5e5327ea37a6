"""What people must be told about delivery: contacts whose channel is failing, incidents nobody could be
routed to. One WARNING when a contact's failure streak starts and one when it recovers (not one per
attempt), counters and a gauge for /metrics, and the state /healthz reports.

Kept in memory per gateway instance: a contact stays "failing" until a delivery to it succeeds again
(or the process restarts); an unroutable incident until someone acknowledges or resolves it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from anxin.metrics import Metrics

log = logging.getLogger("alerting.delivery")


@dataclass(slots=True)
class Streak:
    contact: str
    channel: str
    since: datetime
    error: str
    permanent: bool
    failures: int = 1
    incidents: set[int] = field(default_factory=set)


class DeliveryHealth:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._failing: dict[tuple[str, str], Streak] = {}
        self._unroutable: dict[int, str] = {}  # incident id -> reason
        metrics.gauge("anxin_contacts_failing", "contact channels whose last delivery failed",
                      lambda: float(len(self._failing)))
        metrics.gauge("anxin_incidents_unroutable", "open incidents nobody could be routed to",
                      lambda: float(len(self._unroutable)))

    def failed(self, contact: str, channel: str, incident_id: int, error: str, permanent: bool, at: datetime) -> bool:
        """Count a failed attempt; True when it starts the contact's failure streak."""
        self._metrics.inc("anxin_delivery_failures_total", channel=channel,
                          kind="permanent" if permanent else "transient")
        with self._lock:
            streak = self._failing.get((contact, channel))
            if streak is not None:
                streak.failures += 1
                streak.error, streak.permanent = error, permanent
                streak.incidents.add(incident_id)
                return False
            self._failing[(contact, channel)] = Streak(contact, channel, at, error, permanent, incidents={incident_id})
        log.warning("投递失败 delivery failing: contact %s via %s (incident %s, %s): %s; retrying%s", contact,
                    channel, incident_id, "permanent" if permanent else "transient", error,
                    "" if not permanent else " with the next step")
        return True

    def delivered(self, contact: str, channel: str, at: datetime) -> None:
        with self._lock:
            streak = self._failing.pop((contact, channel), None)
        if streak is not None:
            log.warning("投递恢复 delivery recovered: contact %s via %s after %.0f s and %d failed attempts "
                        "(incidents %s)", contact, channel, (at - streak.since).total_seconds(), streak.failures,
                        sorted(streak.incidents))

    def unroutable(self, incident_id: int, reason: str) -> None:
        with self._lock:
            self._unroutable[incident_id] = reason
        self._metrics.inc("anxin_alarms_unroutable_total")

    def handled(self, incident_id: int) -> None:
        """Someone acknowledged or resolved the incident: it no longer degrades health."""
        with self._lock:
            self._unroutable.pop(incident_id, None)

    def report(self) -> dict[str, Any]:
        """For /healthz: status "degraded" while a contact is failing or an incident is unroutable."""
        with self._lock:
            failing = [{"contact": x.contact, "channel": x.channel, "since": x.since.isoformat(), "error": x.error,
                        "permanent": x.permanent, "failures": x.failures, "incidents": sorted(x.incidents)}
                       for x in self._failing.values()]
            unroutable = [{"incident": i, "reason": r} for i, r in sorted(self._unroutable.items())]
        return {"status": "degraded" if failing or unroutable else "ok", "failing_contacts": failing,
                "unroutable_incidents": unroutable}
