"""On-disk FIFO of line-protocol batches, for when InfluxDB is unreachable.

Each batch is one numbered segment file, written atomically (temp file, fsync, rename, fsync of the
directory), so a crash leaves either the whole batch or nothing. Numbering resumes from the files found
at start-up; segments are replayed strictly in number order.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_SUFFIX = ".lp"


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for tmp in directory.glob("*.tmp"):  # a crash mid-write: the batch was never acknowledged
            tmp.unlink()
        self._lock = threading.Lock()
        self._segments = sorted(int(p.stem) for p in directory.glob(f"*{_SUFFIX}") if p.stem.isdigit())
        self._next = (self._segments[-1] + 1) if self._segments else 1
        self._bytes = sum(self._path(n).stat().st_size for n in self._segments)

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:012d}{_SUFFIX}"

    def append(self, batch: bytes) -> None:
        with self._lock:
            number = self._next
            self._next += 1
            tmp = self.directory / f"{number:012d}.tmp"
            with tmp.open("wb") as f:
                f.write(batch)
                f.flush()
                os.fsync(f.fileno())
            tmp.rename(self._path(number))
            _fsync_dir(self.directory)
            self._segments.append(number)
            self._bytes += len(batch)

    def oldest(self) -> tuple[int, bytes] | None:
        with self._lock:
            if not self._segments:
                return None
            number = self._segments[0]
        return number, self._path(number).read_bytes()

    def remove(self, number: int) -> None:
        with self._lock:
            path = self._path(number)
            self._bytes -= path.stat().st_size
            path.unlink()
            self._segments.remove(number)

    @property
    def segments(self) -> int:
        return len(self._segments)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __bool__(self) -> bool:
        return bool(self._segments)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
