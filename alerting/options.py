"""The alerting engine's settings (built from anxin.config by gateway.service)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AlertingOptions:
    instance_id: str = "anxin-1"
    ack_secret: bytes = b""  # the gateway refuses to start without a real one (anxin.config.check_secrets)
    ack_ttl_s: int = 24 * 3600  # how long an acknowledge link works
    public_url: str = "http://127.0.0.1:8080"
    tick_s: float = 0.2
    delivery_attempts: int = 3  # tries per contact and channel in a step's first round (doubling backoff)
    retry_backoff_s: float = 0.5
    life_safety_retry_s: float = 5.0  # a life-safety contact not reached is tried again this often
    routine_retry_s: float = 30.0  # the rest: this, doubling per round, up to routine_retry_max_s
    routine_retry_max_s: float = 600.0
    routine_max_rounds: int = 8  # then a non-life-safety step gives up on the contacts it did not reach
    claim_lease_s: float = 15.0  # a step claimed by a sender that stopped renewing it is taken over
    voice_severities: tuple[str, ...] = ("critical",)  # phone calls only for these; SMS for all
    contact_rate_per_hour: int = 20  # non-life-safety notifications per contact and hour, at most
    senders: int = 8  # escalation steps sent in parallel (each sends to its contacts in parallel too)
