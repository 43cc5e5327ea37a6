"""Loading a registry file (YAML): districts, institutions, devices, contractors and their contracts,
contacts, drill windows, silences. Upserts, so the same file can be loaded again after an edit.

A bad file gets one clear error (``RegistryFileError``) naming the entry, and nothing of it is stored."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from alerting import commissioning, silences
from alerting.models import Contact, DrillWindow
from anxin.db import Device, Institution
from api.models import Contractor, ContractorInstitution, District


class RegistryFileError(ValueError):
    """The file cannot be loaded; the message says which entry and why (zh-CN / English)."""


def import_registry(sessions: sessionmaker[Session], data: Any, profiles: set[str] | None = None) -> tuple[int, int]:
    """Upsert the file's entries; returns the (institutions, devices) counts. With ``profiles`` (the
    known profile names), a device naming another profile is an error."""
    if not isinstance(data, Mapping):
        raise RegistryFileError("注册文件应是 YAML 映射 / the registry file must be a YAML mapping "
                                "(institutions:, devices:, contacts:, ...)")
    insts = _entries(data, "institutions")
    devs = _entries(data, "devices")
    try:
        with sessions.begin() as s:
            for d in _entries(data, "districts"):
                s.merge(District(name=str(_need(d, "name", "districts")), name_en=str(d.get("name_en", ""))))
            for i in insts:
                s.merge(Institution(id=str(_need(i, "id", "institutions")), name=str(_need(i, "name", "institutions")),
                                    name_en=i.get("name_en", ""), district=i.get("district", "")))
            s.flush()
            for d in devs:
                device_id = str(_need(d, "id", "devices"))
                institution = d.get("institution")
                if institution is not None and s.get(Institution, str(institution)) is None:
                    raise RegistryFileError(f"设备 {device_id}: 没有机构 {institution!r} / device {device_id}: "
                                            f"unknown institution {institution!r}")
                profile = d.get("profile")
                if profiles is not None and profile is not None and profile not in profiles:
                    raise RegistryFileError(f"设备 {device_id}: 没有配置 {profile!r} / device {device_id}: unknown "
                                            f"profile {profile!r} (anxin profiles lists them)")
                device = Device(id=device_id, institution_id=institution, profile=profile,
                                name=d.get("name", ""), room=d.get("room", ""))
                commissioning.reset_if_changed(device, s.get(Device, device.id))
                s.merge(device)
            for c in _entries(data, "contractors"):
                cid = str(_need(c, "id", "contractors"))
                s.merge(Contractor(id=cid, name=str(_need(c, "name", "contractors")), name_en=c.get("name_en", "")))
                s.flush()
                for inst in c.get("institutions") or []:
                    if s.get(Institution, str(inst)) is None:
                        raise RegistryFileError(f"安保公司 {cid}: 没有机构 {inst!r} / contractor {cid}: unknown "
                                                f"institution {inst!r}")
                    s.merge(ContractorInstitution(contractor_id=cid, institution_id=str(inst)))
            for c in _entries(data, "contacts"):
                institution = c.get("institution")
                if institution is not None and s.get(Institution, str(institution)) is None:
                    raise RegistryFileError(f"联系人 {c.get('id')}: 没有机构 {institution!r} / contact {c.get('id')}: "
                                            f"unknown institution {institution!r}")
                s.merge(Contact(
                    id=str(_need(c, "id", "contacts")), role=str(_need(c, "role", "contacts")), name=c.get("name", ""),
                    institution_id=institution, district=c.get("district", ""), phone=str(c.get("phone", "")),
                    email=c.get("email", ""), webhook_url=c.get("webhook_url", ""),
                    webhook_secret=c.get("webhook_secret", ""), channel=c.get("channel", ""),
                    channel_address=c.get("channel_address", ""), channel_secret=c.get("channel_secret", "")))
            for w in _entries(data, "drills"):
                s.add(DrillWindow(institution_id=_need(w, "institution", "drills"),
                                  starts_at=_utc(_need(w, "starts_at", "drills")),
                                  ends_at=_utc(_need(w, "ends_at", "drills")), note=w.get("note", "")))
            for x in _entries(data, "silences"):
                silences.add(s, kind=x.get("kind", "silence"), institution=x.get("institution"), device=x.get("device"),
                             types=x.get("types"), starts_at=_utc(_need(x, "starts_at", "silences")),
                             ends_at=_utc(_need(x, "ends_at", "silences")),
                             created_by=x.get("created_by", "registry"), reason=x.get("reason", ""))
    except (TypeError, AttributeError) as exc:
        raise RegistryFileError(f"注册文件格式错误 / malformed registry file: {exc}") from None
    return len(insts), len(devs)


def _entries(data: Mapping[str, Any], section: str) -> list[Mapping[str, Any]]:
    items = data.get(section) or []
    if not isinstance(items, list) or not all(isinstance(x, Mapping) for x in items):
        raise RegistryFileError(f"{section}: 应是条目列表 / {section} must be a list of entries (- {{id: ..., ...}})")
    return items


def _need(entry: Mapping[str, Any], key: str, section: str) -> Any:
    value = entry.get(key)
    if value is None or value == "":
        raise RegistryFileError(f"{section}: 条目缺少 {key} / an entry lacks {key!r}: {dict(entry)}")
    return value


def _utc(value: Any) -> datetime:
    """A YAML timestamp or ISO text; a time without offset is Asia/Shanghai (people write local times)."""
    try:
        dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        raise RegistryFileError(f"时间格式错误 / not a time: {value!r} (e.g. 2026-12-01 09:30)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=ZoneInfo("Asia/Shanghai"))).astimezone(UTC)
