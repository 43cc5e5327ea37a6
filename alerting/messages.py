"""Notification texts: zh-CN first, English below; times shown in Asia/Shanghai."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOTICE_TYPE = "delivery.failing"  # the payload type of a notice that a contact's channel fails
FEEDBACK_TYPES = {"acknowledged": "incident.acknowledged", "dispatched": "incident.dispatched"}  # state -> type

TYPE_NAMES: dict[str, tuple[str, str]] = {
    "alarm.panic": ("一键报警", "Panic alarm"),
    "alarm.smoke": ("烟感火警", "Smoke / fire alarm"),
    "alarm.gas": ("燃气泄漏", "Gas leak"),
    "alarm.water_leak": ("漏水报警", "Water leak"),
    "alarm.intrusion": ("入侵报警", "Intrusion"),
    "alarm.door": ("门磁报警", "Door open"),
    "fault.battery_low": ("设备低电量", "Low battery"),
    "fault.tamper": ("设备防拆", "Tamper"),
    "fault.sensor": ("设备故障", "Device fault"),
    "env.co2_high": ("二氧化碳超标", "CO2 above limit"),
    "env.hcho_high": ("甲醛超标", "Formaldehyde above limit"),
    "env.pm25_high": ("PM2.5超标", "PM2.5 above limit"),
    "env.fridge_warm": ("冰箱温度过高", "Fridge too warm"),
    "device.offline": ("设备离线", "Device offline"),
    "device.online": ("设备上线", "Device online"),
    "test": ("设备测试", "Device test"),
    NOTICE_TYPE: ("报警通道故障", "Alarm channel failing"),
    FEEDBACK_TYPES["acknowledged"]: ("报警已确认", "Alarm acknowledged"),
    FEEDBACK_TYPES["dispatched"]: ("已派人处置", "Guard dispatched"),
}

# Why an incident went to the duty contact: (zh, en)
FALLBACK_TEXTS: dict[str, tuple[str, str]] = {
    "unregistered_device": ("未登记设备", "unregistered device"),
    "no_institution": ("设备未关联机构", "device has no institution"),
    "no_contact_for_role": ("机构缺少该角色联系人", "no contact for a role"),
}


@dataclass(frozen=True, slots=True)
class Notification:
    incident_id: int
    title: str
    body: str
    payload: dict[str, Any] = field(default_factory=dict)  # machine-readable, for webhooks
    delivery_key: str = ""  # the same for every attempt of one step to one contact


def delivery_key(incident_id: int, step: str, contact_id: str) -> str:
    """``<incident>/<step>/<contact>``: a repeat of the same notification carries the same key."""
    return f"{incident_id}/{step}/{contact_id}"


def build(incident_id: int, event_type: str, drill: bool, institution: str, device: str, room: str,
          opened_at: datetime, step_no: int, ack_url: str, key: str = "", fallback: str = "") -> Notification:
    zh, en = TYPE_NAMES.get(event_type, (event_type, event_type))
    local = opened_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    prefix_zh, prefix_en = ("【演练】", "[DRILL] ") if drill else ("", "")
    title = f"{prefix_zh}【{zh}】{institution} {room or device}"
    why_zh, why_en = FALLBACK_TEXTS.get(fallback, (fallback, fallback))
    body = "\n".join([
        f"{prefix_zh}{zh}：{institution}，{room or '-'}（设备 {device}）",
        *([f"无法按辖区派送（{why_zh}），转交值班人员处理"] if fallback else []),
        f"时间：{local}（北京时间）　事件编号：{incident_id}　第 {step_no + 1} 次通知",
        f"确认收到：{ack_url}",
        "",
        f"{prefix_en}{en}: {institution}, {room or '-'} (device {device})",
        *([f"Not routable by jurisdiction ({why_en}): sent to the duty contact"] if fallback else []),
        f"Time: {local} (Asia/Shanghai)  Incident: {incident_id}  Notification #{step_no + 1}",
        f"Acknowledge: {ack_url}",
        *([f"通知编号 Delivery key: {key}"] if key else []),
    ])
    payload = {
        "incident_id": incident_id, "type": event_type, "drill": drill, "institution": institution,
        "device": device, "room": room, "opened_at": opened_at.isoformat(), "step": step_no, "ack_url": ack_url,
        "title": title, "fallback": fallback,
    }
    return Notification(incident_id, title, body, payload, key)


def build_notice(incident_id: int, event_type: str, institution: str, room: str, failing: str, role: str,
                 channel: str, error: str, ack_url: str, key: str) -> Notification:
    """To the contractor / duty contact: ``failing`` (e.g. the police station) cannot be reached."""
    zh, en = TYPE_NAMES.get(event_type, (event_type, event_type))
    title = f"【报警通道故障】事件 {incident_id}：{failing} 无法送达"
    body = "\n".join([
        f"事件 {incident_id}（{zh}，{institution} {room or ''}）的通知无法送达 {failing}（{role}，{channel}）：{error}",
        "系统正在持续重试；请立即电话联系对方。",
        f"确认收到：{ack_url}",
        "",
        f"Incident {incident_id} ({en}, {institution} {room or ''}): notifications to {failing} ({role}, {channel}) "
        f"are failing: {error}",
        "Still retrying; call them now.",
        f"Acknowledge: {ack_url}",
        f"通知编号 Delivery key: {key}",
    ])
    payload = {
        "incident_id": incident_id, "type": NOTICE_TYPE, "incident_type": event_type, "institution": institution,
        "room": room, "failing_contact": failing, "failing_role": role, "failing_channel": channel, "error": error,
        "ack_url": ack_url, "title": title, "drill": False,
    }
    return Notification(incident_id, title, body, payload, key)


def build_feedback(incident_id: int, event_type: str, drill: bool, institution: str, room: str, state: str,
                   actor: str, at: datetime, guard: str, key: str) -> Notification:
    """To the institution and the contractor: someone (``actor``) acknowledged or dispatched the incident."""
    zh, en = TYPE_NAMES.get(event_type, (event_type, event_type))
    feedback_type = FEEDBACK_TYPES[state]
    state_zh = TYPE_NAMES[feedback_type][0]
    local = at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    prefix_zh, prefix_en = ("【演练】", "[DRILL] ") if drill else ("", "")
    if state == "dispatched":
        done_zh = f"{actor} 已于 {local}（北京时间）派出{f'保安 {guard} ' if guard else '人员'}前往处置。"
        on_the_way = f": guard {guard} is on the way" if guard else ""
        done_en = f"Dispatched by {actor} at {local} (Asia/Shanghai){on_the_way}."
    else:
        done_zh = f"已由 {actor} 于 {local}（北京时间）确认，正在处置。"
        done_en = f"Acknowledged by {actor} at {local} (Asia/Shanghai)."
    title = f"{prefix_zh}【{state_zh}】{zh} {institution} {room}".rstrip()
    body = "\n".join([
        f"{prefix_zh}{zh}：{institution}，{room or '-'}（事件编号 {incident_id}）",
        done_zh,
        "",
        f"{prefix_en}{en}: {institution}, {room or '-'} (incident {incident_id})",
        done_en,
        f"通知编号 Delivery key: {key}",
    ])
    payload = {
        "incident_id": incident_id, "type": feedback_type, "incident_type": event_type, "state": state,
        "drill": drill, "institution": institution, "room": room, "actor": actor, "at": at.isoformat(),
        "guard": guard, "title": title,
    }
    return Notification(incident_id, title, body, payload, key)
