"""Administration pages for people: users with their roles and scopes; one user's API keys and password."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from api.console.pages.admin_layout import admin_page
from api.deps import Admin, SessionDep
from api.routes.contractors import contractor_rows
from api.routes.districts import district_rows
from api.routes.institutions import institution_rows
from api.routes.users import UsernamePath, list_keys, user_rows

router = APIRouter(include_in_schema=False)


@router.get("/console/admin/users", response_class=HTMLResponse)
def users(request: Request, s: SessionDep, user: Admin) -> HTMLResponse:
    return admin_page(request, "admin_users.html", user, "users", rows=user_rows(s),
                      institutions=institution_rows(s, user.scope), contractors=contractor_rows(s),
                      districts=district_rows(s))


@router.get("/console/admin/users/{username}", response_class=HTMLResponse)
def one_user(username: UsernamePath, request: Request, s: SessionDep, user: Admin) -> HTMLResponse:
    keys = list_keys(username, s, user)  # 404 for an unknown user
    [row] = user_rows(s, username)
    return admin_page(request, "admin_user.html", user, "users", row=row, keys=keys)
