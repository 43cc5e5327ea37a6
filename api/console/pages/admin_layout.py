"""What every administration page shares: its sections (the sub-navigation) and how it is rendered."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from api.console.render import page
from api.deps import Principal

# (path segment, zh, en): the administration sections, in the order of the sub-navigation
SECTIONS = [("districts", "辖区", "Districts"), ("institutions", "机构", "Institutions"),
            ("devices", "设备", "Devices"), ("contacts", "联系人", "Contacts"),
            ("contractors", "安保公司", "Contractors"), ("users", "用户", "Users"),
            ("policies", "路由与升级策略", "Routes & escalation"), ("dead-letters", "死信", "Dead letters"),
            ("audit", "审计日志", "Audit log")]


def admin_page(request: Request, template: str, user: Principal, section: str, **context: Any) -> HTMLResponse:
    return page(request, template, user, sections=SECTIONS, section=section, as_json=as_json, **context)


def as_json(value: Any) -> str:
    """Audit details as people read them (Chinese as written, not \\u escapes)."""
    return json.dumps(value, ensure_ascii=False, default=str)
