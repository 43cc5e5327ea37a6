"""SIA DC-09 to a real receiver (pysiaalarm's TCP server), plain and AES-encrypted."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pysiaalarm.account import SIAAccount
from pysiaalarm.event import SIAEvent
from pysiaalarm.sync.client import SIAClient

from alerting.channels.base import ChannelError
from alerting.channels.sia_dc09 import SiaDc09Channel, crc16_arc, frame
from alerting.messages import Notification
from tests.harness import Publisher, running_gateway, wait_for
from tests.servers import free_port
from tests.servers.mosquitto import MosquittoServer
from tests.servers.webhook import WebhookReceiver
from tests.test_alerting import PRESS, directory, settings_for


def test_crc16_arc_check_value_and_frame() -> None:
    assert crc16_arc(b"123456789") == 0xBB3D  # CRC-16/ARC catalogue check value
    assert frame('"NULL"0000R0L0#1234[]') == b"\n" + b"%04X" % crc16_arc(b'"NULL"0000R0L0#1234[]') + b"0015" + \
        b'"NULL"0000R0L0#1234[]\r'


@pytest.mark.parametrize("key", ["", "AAAAAAAAAAAAAAAA"])
def test_panic_reaches_the_alarm_receiving_centre(key: str) -> None:
    events: list[SIAEvent] = []
    lock = threading.Lock()

    def received(event: SIAEvent) -> None:
        with lock:
            events.append(event)

    port = free_port()
    client = SIAClient("127.0.0.1", port, [SIAAccount("1234", key or None)], received)
    client.start()
    try:
        channel = SiaDc09Channel()
        note = Notification(7, "【一键报警】", "", {"type": "alarm.panic"})
        address = f"127.0.0.1:{port}?account=1234&receiver=1&line=1&zone=5"
        wait_for(lambda: _listening(port), what="SIA receiver")
        receipts = [channel.send(address, key, note) for _ in range(2)]
        assert receipts == ["ACK 0001", "ACK 0002"]  # sequence numbers count up
        wait_for(lambda: len(events) == 2, what="events at the receiver")
        first: Any = events[0]
        assert (first.code, first.account, first.ri) == ("PA", "1234", "005")
        assert first.valid_timestamp and first.encrypted == bool(key)
        with pytest.raises(ChannelError, match="Contact ID"):
            channel.send(address, key, Notification(8, "", "", {"type": "env.co2_high"}))
    finally:
        client.stop()


def test_unreachable_receiver_is_a_channel_error() -> None:
    with pytest.raises(ChannelError):
        SiaDc09Channel(timeout_s=1).send(f"127.0.0.1:{free_port()}?account=1234", "",
                                         Notification(1, "", "", {"type": "alarm.smoke"}))


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_panic_press_over_mqtt_reaches_the_arc_over_dc09(tmp_path: Path, mosquitto: MosquittoServer,
                                                         webhooks: WebhookReceiver) -> None:
    events: list[SIAEvent] = []
    port = free_port()
    client = SIAClient("127.0.0.1", port, [SIAAccount("5678", "BBBBBBBBBBBBBBBB")], events.append)
    client.start()
    try:
        registry = directory(webhooks.url)
        registry["contacts"].append({"id": "arc", "role": "contractor", "institution": "xm-001", "channel": "sia_dc09",
                                     "channel_address": f"127.0.0.1:{port}?account=5678&zone=12",
                                     "channel_secret": "BBBBBBBBBBBBBBBB"})
        with running_gateway(settings_for(tmp_path, mosquitto.port), registry=registry), \
                Publisher(mosquitto.port) as pub:
            wait_for(lambda: _listening(port), what="SIA receiver")
            pub.publish("zigbee2mqtt/sos-front", PRESS)
            wait_for(lambda: bool(events), what="ADM-CID at the receiving centre")
    finally:
        client.stop()
    assert (events[0].code, events[0].account, events[0].ri) == ("PA", "5678", "012")
