"""Notification texts: zh-CN first, English below; times shown in Asia/Shanghai."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")

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
}


@dataclass(frozen=True, slots=True)
class Notification:
    incident_id: int
    title: str
    body: str
    payload: dict[str, Any] = field(default_factory=dict)  # machine-readable, for webhooks


def build(incident_id: int, event_type: str, drill: bool, institution: str, device: str, room: str,
          opened_at: datetime, step_no: int, ack_url: str) -> Notification:
    zh, en = TYPE_NAMES.get(event_type, (event_type, event_type))
    local = opened_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    prefix_zh, prefix_en = ("【演练】", "[DRILL] ") if drill else ("", "")
    title = f"{prefix_zh}【{zh}】{institution} {room or device}"
    body = "\n".join([
        f"{prefix_zh}{zh}：{institution}，{room or '-'}（设备 {device}）",
        f"时间：{local}（北京时间）　事件编号：{incident_id}　第 {step_no + 1} 次通知",
        f"确认收到：{ack_url}",
        "",
        f"{prefix_en}{en}: {institution}, {room or '-'} (device {device})",
        f"Time: {local} (Asia/Shanghai)  Incident: {incident_id}  Notification #{step_no + 1}",
        f"Acknowledge: {ack_url}",
    ])
    payload = {
        "incident_id": incident_id, "type": event_type, "drill": drill, "institution": institution,
        "device": device, "room": room, "opened_at": opened_at.isoformat(), "step": step_no, "ack_url": ack_url,
        "title": title,
    }
    return Notification(incident_id, title, body, payload)
