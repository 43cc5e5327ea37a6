"""The HTTP application of a running system: the API, plus the demo's receivers when it is the demo."""

from __future__ import annotations

from fastapi import FastAPI

from api.main import create_app
from demo.inbox import inbox_router
from program.system import Anxin


def build_app(system: Anxin) -> FastAPI:
    app = create_app(system)
    if system.settings.demo_inbox:
        app.include_router(inbox_router())
    return app
