"""What the administration routes share: validated field types (with messages people can act on, zh-CN
first), the 404/409 answers, and applying a change while noting what it changed for the audit log."""

from __future__ import annotations

import re
from typing import Annotated, Any, NoReturn

from fastapi import HTTPException, Path, Query
from pydantic import AfterValidator, Field

IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # for query and path parameters (PostgreSQL refuses NUL in text)


def _ident(value: str) -> str:
    if not IDENT.fullmatch(value):
        raise ValueError("编号须为 1-64 个字母、数字或 . _ : -（以字母或数字开头）/ an id is 1-64 letters, digits "
                         "or . _ : - (starting with a letter or digit)")
    return value


def _text(max_chars: int, required: bool) -> AfterValidator:
    def check(value: str) -> str:
        value = value.strip()
        if CONTROL.search(value):
            raise ValueError("不能含控制字符 / control characters are not allowed")
        if required and not value:
            raise ValueError("不能为空 / must not be empty")
        if len(value) > max_chars:
            raise ValueError(f"最多 {max_chars} 个字符 / at most {max_chars} characters")
        return value

    return AfterValidator(check)


def _device_id(value: str) -> str:
    if not value or value != value.strip() or len(value) > 200 or CONTROL.search(value) or set("+#") & set(value):
        raise ValueError("设备编号须为 1-200 个字符，首尾无空格，不含 + # 或控制字符 / a device id is 1-200 "
                         "characters without leading/trailing spaces, + # or control characters")
    return value


Ident = Annotated[str, AfterValidator(_ident)]
DeviceIdField = Annotated[str, AfterValidator(_device_id)]
Name = Annotated[str, _text(200, True)]  # a required name
Text = Annotated[str, _text(200, False)]
LongText = Annotated[str, _text(500, False)]

# Path parameters: the same limits as the columns, so an odd id is a 404/422, never a database error.
IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=PRINTABLE)]
DevicePath = Annotated[str, Path(min_length=1, max_length=200, pattern=PRINTABLE)]
NamePath = Annotated[str, Path(min_length=1, max_length=100, pattern=PRINTABLE)]

# Query filters (None: not filtered)
IdFilter = Annotated[str | None, Query(max_length=64, pattern=PRINTABLE)]
NameFilter = Annotated[str | None, Query(max_length=100, pattern=PRINTABLE)]
WordFilter = Annotated[str | None, Query(max_length=40, pattern=PRINTABLE)]
LongFilter = Annotated[str | None, Query(max_length=300, pattern=PRINTABLE)]
Word = Annotated[str, Field(max_length=100, pattern=PRINTABLE)]  # a district, in a list


def not_found(what_zh: str, what_en: str, key: str) -> NoReturn:
    raise HTTPException(404, f"没有{what_zh} / no {what_en} {key!r}")


def conflict(message: str) -> NoReturn:
    raise HTTPException(409, message)


def apply_changes(row: Any, changes: dict[str, Any], secret: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Sets the given attributes on ``row``; returns {field: [old, new]} of those that changed (secret
    fields only as "(set)" / "(cleared)", never their value)."""
    done: dict[str, Any] = {}
    for name, new in changes.items():
        old = getattr(row, name)
        if old == new:
            continue
        setattr(row, name, new)
        done[name] = ("(set)" if new else "(cleared)") if name in secret else [old, new]
    return done


def unprocessable(message: str) -> NoReturn:
    """A value that is well-formed but names nothing known (an unknown district, profile...)."""
    raise HTTPException(422, message)
