"""SIA DC-09 (ANSI/SIA DC-09) over TCP to a security contractor's alarm receiving centre, ADM-CID events.

Frame: LF, CRC-16/ARC (4 hex) of the message, its length (4 hex), the message, CR. The message is
``"ADM-CID"<seq>R<receiver>L<line>#<account>[#<account>|<Q><EEE> <PP> <ZZZ>]_<HH:MM:SS,MM-DD-YYYY>`` with
the sequence 0001–9999 and the time in UTC (receivers accept −40 s/+20 s). With a key the block after
``[`` is AES-CBC with a zero IV over pad + ``|`` + data + ``]`` + time, hex-encoded, and the type is
``"*ADM-CID"``. The key is the configured key string's bytes (16/24/32 characters), as panels and the
pysiaalarm receiver use it. The centre answers ACK (sent), NAK (time or CRC refused) or DUH (unknown).

Contact: ``channel: sia_dc09``, ``channel_address: host:port?account=1234&receiver=1&line=1&zone=1``,
``channel_secret``: the AES key (empty: unencrypted).
"""

from __future__ import annotations

import itertools
import socket
import threading
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from Crypto.Cipher import AES

from alerting.channels.base import ChannelError
from alerting.messages import Notification

# Contact ID event codes (qualifier 1 = new event) for our event types.
CID_CODES = {
    "alarm.panic": 120, "alarm.smoke": 111, "alarm.gas": 151, "alarm.water_leak": 154, "alarm.intrusion": 130,
    "alarm.door": 134, "fault.battery_low": 302, "fault.tamper": 137, "fault.sensor": 380, "device.offline": 381,
    "test": 601,
}


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC (poly 0xA001 reflected, init 0), as DC-09 specifies."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frame(message: str) -> bytes:
    body = message.encode("ascii")
    return b"\n" + f"{crc16_arc(body):04X}{len(body):04X}".encode() + body + b"\r"


def encrypt_block(key: str, plaintext: str) -> str:
    padded = plaintext.rjust(len(plaintext) + 16 - len(plaintext) % 16, "0")
    return AES.new(key.encode("ascii"), AES.MODE_CBC, bytes(16)).encrypt(padded.encode("ascii")).hex().upper()


class SiaDc09Channel:
    name = "sia_dc09"

    def __init__(self, timeout_s: float = 5.0) -> None:
        self._timeout = timeout_s
        self._seq = itertools.cycle(range(1, 10000))
        self._lock = threading.Lock()

    def message(self, account: str, receiver: str, line: str, code: int, zone: int, key: str,
                now: datetime | None = None) -> tuple[int, str]:
        with self._lock:
            seq = next(self._seq)
        stamp = (now or datetime.now(UTC)).strftime("_%H:%M:%S,%m-%d-%Y")
        event = f"1{code:03d} 01 {zone:03d}]"
        head = f"{seq:04d}R{receiver}L{line}#{account}["
        if key:
            return seq, f'"*ADM-CID"{head}{encrypt_block(key, "|" + event + stamp)}'
        return seq, f'"ADM-CID"{head}#{account}|{event}{stamp}'

    def send(self, address: str, secret: str, note: Notification) -> str:
        target = urlsplit(f"tcp://{address}")
        options = {k: v[0] for k, v in parse_qs(target.query).items()}
        account = options.get("account")
        if not target.hostname or not target.port or not account:
            raise ChannelError(f"bad DC-09 address {address!r} (host:port?account=…)", permanent=True)
        code = CID_CODES.get(str(note.payload.get("type")))
        if code is None:
            raise ChannelError(f"no Contact ID code for {note.payload.get('type')}", permanent=True)
        seq, message = self.message(account, options.get("receiver", "0"), options.get("line", "0"), code,
                                    int(options.get("zone", "1")), secret)
        try:
            with socket.create_connection((target.hostname, target.port), timeout=self._timeout) as sock:
                sock.sendall(frame(message))
                answer = b""
                while not answer.endswith(b"\r"):
                    chunk = sock.recv(1024)
                    if not chunk:
                        break
                    answer += chunk
        except OSError as exc:
            raise ChannelError(f"{exc.__class__.__name__}: {exc}") from None
        text = answer.decode("ascii", "replace").strip()
        if ('"ACK"' in text or '"*ACK"' in text) and f'ACK"{seq:04d}' in text:
            return f"ACK {seq:04d}"
        raise ChannelError(f"receiver answered {text[:120]!r} to sequence {seq:04d}")
