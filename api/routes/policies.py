"""The routing and escalation policies and the threshold rules, read-only: they live in YAML files
(ANXIN_ALERTING_ROUTES, ANXIN_THRESHOLDS) that are reviewed and deployed like code."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from alerting.routing import load_routing
from alerting.thresholds import load_thresholds
from api.deps import Admin, System
from api.schemas import PoliciesOut

router = APIRouter(prefix="/api/v1/policies", tags=["admin"])


def policies(system: System) -> PoliciesOut:
    settings = system.settings
    try:
        routing, thresholds = load_routing(settings.alerting_routes), load_thresholds(settings.thresholds)
    except (OSError, ValueError) as exc:  # edited since start-up and broken: say so, the running rules stay
        raise HTTPException(503, f"策略文件无法读取 / the policy files cannot be read now: {exc}") from None
    return PoliciesOut(routes_file=str(settings.alerting_routes), thresholds_file=str(settings.thresholds),
                       routing=routing.model_dump(mode="json", by_alias=True),
                       thresholds=thresholds.model_dump(mode="json"))


@router.get("")
def get_policies(system: System, _: Admin) -> PoliciesOut:
    """The route tree, escalation policies and threshold rules as the files on disk say now."""
    return policies(system)
