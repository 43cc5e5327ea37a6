"""Route tree and escalation policies (YAML, validated): which roles hear of an incident, and when.

Routes are tried in order; the first match wins unless it says ``continue: true``, in which case later
matches add their receivers too (Alertmanager-like). Policies are copied into the incident as steps.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime, time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from anxin.model import LIFE_SAFETY, EventType

DEFAULT_ROUTES = Path(__file__).resolve().parent / "default_routes.yaml"
SHANGHAI = ZoneInfo("Asia/Shanghai")
RECEIVERS = "$receivers"  # in a policy step: the matched routes' receivers

Severity = Literal["critical", "major", "minor", "info"]


def severity_of(event_type: EventType) -> Severity:
    if event_type in LIFE_SAFETY:
        return "critical"
    if event_type.value.startswith("alarm."):
        return "major"
    if event_type is EventType.TEST:
        return "info"
    return "minor"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Match(_Strict):
    type: list[str] = Field(default_factory=list)  # glob patterns: "alarm.*"
    severity: list[Severity] = Field(default_factory=list)
    district: list[str] = Field(default_factory=list)
    institution: list[str] = Field(default_factory=list)
    hours: str | None = None  # "22:00-06:00", Asia/Shanghai

    @model_validator(mode="after")
    def _hours(self) -> Match:
        if self.hours is not None:
            _parse_hours(self.hours)
        return self

    def matches(self, event_type: str, severity: str, district: str, institution: str, at: datetime) -> bool:
        if self.type and not any(fnmatch.fnmatchcase(event_type, p) for p in self.type):
            return False
        if self.severity and severity not in self.severity:
            return False
        if self.district and district not in self.district:
            return False
        if self.institution and institution not in self.institution:
            return False
        if self.hours is not None:
            start, end = _parse_hours(self.hours)
            now = at.astimezone(SHANGHAI).time()
            inside = start <= now < end if start <= end else (now >= start or now < end)
            if not inside:
                return False
        return True


class Route(_Strict):
    name: str
    match: Match = Field(default_factory=Match)
    receivers: list[str]
    policy: str
    continue_: bool = Field(default=False, alias="continue")


class Step(_Strict):
    after_s: float = Field(ge=0)
    roles: list[str]


class Policy(_Strict):
    steps: list[Step] = Field(min_length=1)
    repeat_every_s: float | None = Field(default=None, gt=0)  # after the last step, until acknowledged
    max_repeats: int = Field(default=20, ge=0)


class RoutingConfig(_Strict):
    routes: list[Route]
    policies: dict[str, Policy]
    drill_policy: str = "drill"
    # who hears back that an incident was acknowledged or dispatched (a drill's: the drill receivers only)
    feedback_roles: list[str] = Field(default_factory=lambda: ["institution", "contractor"])

    @model_validator(mode="after")
    def _known_policies(self) -> RoutingConfig:
        for r in self.routes:
            if r.policy not in self.policies:
                raise ValueError(f"route {r.name}: unknown policy {r.policy!r}")
        if self.drill_policy not in self.policies:
            raise ValueError(f"unknown drill policy {self.drill_policy!r}")
        return self


class Decision(_Strict):
    route: str
    receivers: list[str]
    policy_name: str
    policy: Policy


def load_routing(path: Path = DEFAULT_ROUTES) -> RoutingConfig:
    return RoutingConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def decide(config: RoutingConfig, event_type: str, severity: str, district: str, institution: str,
           at: datetime, drill: bool) -> Decision | None:
    """Receivers and policy for an incident; None when no route matches (nobody is notified)."""
    if drill:  # a drill never reaches police or fire, whatever the routes say
        return Decision(route="drill", receivers=["drill"], policy_name=config.drill_policy,
                        policy=config.policies[config.drill_policy])
    matched: list[Route] = []
    for route in config.routes:
        if route.match.matches(event_type, severity, district, institution, at):
            matched.append(route)
            if not route.continue_:
                break
    if not matched:
        return None
    receivers = list(dict.fromkeys(r for route in matched for r in route.receivers))
    first = matched[0]
    return Decision(route=first.name, receivers=receivers, policy_name=first.policy,
                    policy=config.policies[first.policy])


def expand_roles(roles: list[str], receivers: list[str]) -> list[str]:
    """A policy step's roles with ``$receivers`` replaced by the matched routes' receivers (no repeats)."""
    out: list[str] = []
    for role in roles:
        out.extend(receivers if role == RECEIVERS else [role])
    return list(dict.fromkeys(out))


def _parse_hours(text: str) -> tuple[time, time]:
    try:
        a, b = text.split("-")
        return time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
    except ValueError:
        raise ValueError(f"hours must look like 22:00-06:00, not {text!r}") from None
