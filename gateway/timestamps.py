"""Device timestamps in their many shapes, to aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

TimestampFormat = Literal["auto", "iso8601", "epoch_s", "epoch_ms", "compact"]

# A device clock is trusted only inside this window around receipt; otherwise receipt time is used
# (a device that lost its RTC reports 1970 or 2000, and would vanish from every dashboard).
MAX_PAST = timedelta(days=1)
MAX_FUTURE = timedelta(minutes=5)


def parse_timestamp(value: Any, fmt: TimestampFormat, naive_tz: ZoneInfo) -> datetime | None:
    """Parse a device timestamp; None when absent or unparseable."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
            num = float(value)
            if fmt == "epoch_ms" or (fmt == "auto" and num > 1e11):
                num /= 1000.0
            elif fmt not in ("auto", "epoch_s"):
                return None
            return datetime.fromtimestamp(num, UTC)
        if not isinstance(value, str):
            return None
        if fmt == "compact" or (fmt == "auto" and len(value) == 16 and value[8] == "T"):
            # Huawei OceanConnect: 20170214T170220Z
            return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if fmt not in ("auto", "iso8601"):
            return None
        dt = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=naive_tz)
        return dt.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None


def trusted(device_ts: datetime | None, received_at: datetime) -> datetime:
    """Device time when it is plausible, else receipt time."""
    if device_ts is None:
        return received_at
    if received_at - MAX_PAST <= device_ts <= received_at + MAX_FUTURE:
        return device_ts
    return received_at


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
