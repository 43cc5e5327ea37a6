"""On-disk FIFO of line-protocol batches, for when InfluxDB is unreachable.

Each batch is one numbered segment file (``000000000042.lp``), written atomically: temp file, fsync,
rename, fsync of the directory, so a crash leaves either the whole batch or nothing (a left-over
``.tmp`` was never acknowledged and is deleted at start-up). Numbering resumes after the highest
segment found at start-up; segments are handed out strictly in number order.

Removing a segment is not fsynced: if a crash forgets the unlink, the batch is sent once more, which
InfluxDB absorbs (a point is identified by measurement, tag set and timestamp; re-writing it
overwrites it with the same value).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from pathlib import Path

SUFFIX = ".lp"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that after a crash it is either complete or absent."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. disk full: leave no torn file behind
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Thread-safe: one thread may append while another reads and removes the oldest segment."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for tmp in directory.glob("*.tmp"):  # a crash mid-write: that batch was never acknowledged
            tmp.unlink()
        self._lock = threading.Lock()
        numbers = sorted(int(p.stem) for p in directory.glob(f"*{SUFFIX}") if p.stem.isdigit())
        self._segments: deque[int] = deque(numbers)
        self._next = numbers[-1] + 1 if numbers else 1
        self._bytes = sum(self._path(n).stat().st_size for n in numbers)

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:012d}{SUFFIX}"

    def append(self, batch: bytes) -> int:
        """Store one batch durably; returns its segment number. Raises OSError if the disk fails."""
        with self._lock:
            number = self._next
            write_atomic(self._path(number), batch)
            self._next += 1
            self._segments.append(number)
            self._bytes += len(batch)
            return number

    def oldest(self) -> tuple[int, bytes] | None:
        """(number, batch) of the oldest segment, left in place; None when the spool is empty."""
        with self._lock:
            if not self._segments:
                return None
            number = self._segments[0]
            return number, self._path(number).read_bytes()

    peek = oldest

    def remove(self, number: int) -> None:
        """Drop a segment once its batch is stored (or set aside); normally the oldest."""
        with self._lock:
            path = self._path(number)
            size = path.stat().st_size
            path.unlink()
            if self._segments and self._segments[0] == number:
                self._segments.popleft()
            else:
                self._segments.remove(number)
            self._bytes -= size

    @property
    def segments(self) -> int:
        return len(self._segments)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._segments)

    def __bool__(self) -> bool:
        return bool(self._segments)
