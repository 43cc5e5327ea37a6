"""Group-chat robots: DingTalk, WeCom (企业微信) and Feishu custom robots, which share the answer check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import urlencode

import httpx
import orjson

from alerting.channels.base import ChannelError, post_json
from alerting.messages import Notification


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk custom robot signing: base64(HMAC-SHA256(key=secret, msg="<timestamp>\\n<secret>"))."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu custom bot signing: base64(HMAC-SHA256(key="<timestamp>\\n<secret>", msg=empty))."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


# Robot refusals that retrying cannot fix: bad signature / keyword / IP (DingTalk 310000, Feishu 19021,
# 19022, 19024), invalid token or webhook address (DingTalk 300001, 400013, WeCom 93000, 40008),
# malformed request (Feishu 9499). Anything else (rate limits, busy) is retried.
ROBOT_PERMANENT_CODES = frozenset({310000, 300001, 400013, 93000, 40008, 9499, 19021, 19022, 19024})


def robot_text(note: Notification) -> str:
    """Robots post into a group chat: people read the delivery key in the text's last line."""
    return f"{note.title}\n{note.body}"


class _ChatRobot:
    """Group-chat robots answer HTTP 200 with an error code in the body; both are checked."""

    name = ""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self._client = httpx.Client(timeout=timeout_s)

    def _post(self, url: str, body: dict[str, object]) -> str:
        answer = post_json(self._client, url, content=orjson.dumps(body), headers={"Content-Type": "application/json"})
        code = answer.get("errcode", answer.get("code", answer.get("StatusCode", 0)))
        if code != 0:
            raise ChannelError(f"robot refused: {answer}", permanent=code in ROBOT_PERMANENT_CODES)
        return "2xx, code 0"

    def close(self) -> None:
        self._client.close()


class DingTalkRobot(_ChatRobot):
    """https://oapi.dingtalk.com/robot/send?access_token=…; with a secret, &timestamp=&sign= are added."""

    name = "dingtalk"

    def send(self, address: str, secret: str, note: Notification) -> str:
        url = address
        if secret:
            ts = int(time.time() * 1000)
            url += ("&" if "?" in url else "?") + urlencode({"timestamp": ts, "sign": dingtalk_sign(secret, ts)})
        return self._post(url, {"msgtype": "text", "text": {"content": robot_text(note)}})


class WeComRobot(_ChatRobot):
    """https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=… (the key in the URL is the credential)."""

    name = "wecom"

    def send(self, address: str, secret: str, note: Notification) -> str:
        return self._post(address, {"msgtype": "text", "text": {"content": robot_text(note)}})


class FeishuRobot(_ChatRobot):
    """https://open.feishu.cn/open-apis/bot/v2/hook/…; with a secret, timestamp and sign go in the body."""

    name = "feishu"

    def send(self, address: str, secret: str, note: Notification) -> str:
        body: dict[str, object] = {"msg_type": "text", "content": {"text": robot_text(note)}}
        if secret:
            ts = int(time.time())
            body.update({"timestamp": str(ts), "sign": feishu_sign(secret, ts)})
        return self._post(address, body)
