"""Builds the HTTP application: the versioned API (``/api/v1``), the web console, the acknowledge link,
platform pushes, health and metrics. OpenAPI at ``/openapi.json``, its docs at ``/docs`` from assets
served here (no CDN: mainland networks and offline sites cannot reach one)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.body_limit import BodyLimit
from api.console.pages import admin, board, devices, incident, institution, overview
from api.console.render import STATIC
from api.deps import LoginRequired, Runtime
from api.routes import (
    audit_log,
    auth,
    contacts,
    contractors,
    dead_letters,
    device_health,
    device_tests,
    districts,
    drill_windows,
    feed,
    health,
    incidents,
    ingest,
    institution_summary,
    institutions,
    policies,
    readings,
    users,
)
from api.routes import board as board_api
from api.routes import devices as device_api
from api.routes import overview as overview_api
from api.routes.ack import ack_router
from api.security import LoginThrottle

ROUTERS = [health.router, ingest.router, auth.router, incidents.router, feed.router]
ROUTERS += [districts.router, institutions.router, device_api.router, contacts.router, contractors.router,  # admin
            users.router, policies.router, dead_letters.router, audit_log.router]
ROUTERS += [overview_api.router]  # commission
ROUTERS += [readings.router, institution_summary.router, drill_windows.router, device_tests.router]  # institution
ROUTERS += [board_api.router, device_health.router]  # contractor
PAGES = [board.router, devices.router, institution.router, overview.router, admin.router, incident.router]


def create_app(system: Runtime) -> FastAPI:
    app = FastAPI(title="Anxin 安心", version="1.0.0", docs_url=None, redoc_url=None,
                  description="托育机构安全监测平台 API / childcare safety-monitoring API. Log in to the console "
                              "for a session cookie, or send `Authorization: Bearer <API key>`.")
    app.state.system = system
    app.state.login_throttle = LoginThrottle()
    for router in ROUTERS + PAGES:
        app.include_router(router)
    app.include_router(ack_router(system))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, max_bytes=system.settings.http_max_body_bytes)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Anxin API",
                                   swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.exception_handler(LoginRequired)
    def login_required(request: Request, _exc: LoginRequired) -> Response:
        if wants_html(request):
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={path}", status_code=303)
        return JSONResponse({"detail": "请先登录 / log in first (session cookie or Authorization: Bearer <API key>)"},
                            status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if wants_html(request) and request.method == "GET" and exc.status_code in (403, 404):
            from api.console.render import page

            return page(request, "error.html", None, status=exc.status_code,
                        title={403: "无权访问 / Forbidden", 404: "找不到 / Not found"}[exc.status_code],
                        message=str(exc.detail))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return app


def wants_html(request: Request) -> bool:
    """A person's browser opening a console page (not a script calling the API)."""
    return (not request.url.path.startswith(("/api/", "/ingest/", "/docs", "/openapi"))
            and "text/html" in request.headers.get("accept", ""))
