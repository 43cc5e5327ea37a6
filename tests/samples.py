"""The public device payload samples (copied from shared/samples, sources named in each entry)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES_FILE = Path(__file__).parent / "fixtures" / "device_samples.json"


def samples() -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in json.loads(SAMPLES_FILE.read_text(encoding="utf-8"))}


def payload_of(sample: dict[str, Any]) -> bytes:
    if "payload_text" in sample:
        return str(sample["payload_text"]).encode()
    return bytes.fromhex(sample["payload_hex"])
