"""People's actions on an incident that the alerting engine may not offer yet (h-board): dispatch with the
guard's name and free notes. Until the engine has them (``transition(..., guard=)``, ``add_note``), the
API answers 501 rather than dropping the guard or the note silently."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import HTTPException

from alerting import engine as engine_module
from alerting.engine import AlertingEngine
from alerting.models import Incident

NOT_YET = "告警引擎尚不支持 / the alerting engine does not support this yet"


def closure_codes() -> tuple[str, ...]:
    codes: tuple[str, ...] = tuple(getattr(engine_module, "CLOSURE_CODES", ()))
    return codes


def supports_guard(engine: AlertingEngine) -> bool:
    return "guard" in inspect.signature(engine.transition).parameters


def supports_notes(engine: AlertingEngine) -> bool:
    return callable(getattr(engine, "add_note", None))


def dispatch(engine: AlertingEngine, incident_id: int, actor: str, channel: str, *, guard: str,
             note: str) -> Incident:
    if not supports_guard(engine):
        raise HTTPException(501, f"{NOT_YET}: dispatch with a guard's name")
    transition: Any = engine.transition
    result: Incident = transition(incident_id, "dispatched", actor, channel, closure_code=None, note=note, guard=guard)
    return result


def add_note(engine: AlertingEngine, incident_id: int, actor: str, text: str, channel: str) -> None:
    add: Any = getattr(engine, "add_note", None)
    if add is None:
        raise HTTPException(501, f"{NOT_YET}: notes")
    add(incident_id, actor, text, channel)
