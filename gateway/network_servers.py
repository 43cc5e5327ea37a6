"""Network servers: the envelope a device's bytes arrive in, kept apart from the device profile.

A LoRaWAN device (a Milesight WS301) sends the same bytes whether ChirpStack, The Things Stack or a
raw forwarder carries them; only the envelope differs (topic, where the bytes and the device's EUI are,
the radio metadata's field names). A network-server file (``device_profiles/network-servers/*.yaml``)
describes one envelope; a device profile with ``network: lorawan`` is bound at load time to every
server of that family, so one device YAML works behind each. Each server's uplink gets a normalised
``network`` block (``dev_eui``, ``time``, ``rssi``, ``snr``, ``fport``...) that device profiles read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.decoder import CompiledProfile, DecodeError
from gateway.paths import MISSING, Segment, parse_path, resolve
from gateway.profile_schema import DeviceIdSpec, DeviceProfile, TimestampSpec
from gateway.topics import compile_template

NETWORK_SERVER_DIR = "network-servers"


class NetworkServerError(ValueError):
    """A network-server file is unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PayloadSpec(_Strict):
    path: str
    encoding: Literal["base64", "hex"] = "base64"

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        parse_path(v)
        return v


class NetworkServer(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    family: str = "lorawan"
    topics: list[str] = Field(min_length=1)
    format: Literal["json", "binary"] = "json"  # binary: the MQTT payload is the device's bytes
    payload: PayloadSpec | None = None  # json: where the bytes are
    device_id: DeviceIdSpec
    # network.<key> <- the first of these paths present in the uplink (v3 and v4 name SNR differently)
    fields: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("fields")
    @classmethod
    def _paths(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for paths in v.values():
            for p in paths:
                parse_path(p)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> NetworkServer:
        for t in self.topics:
            tpl = compile_template(t)
            if self.device_id.topic is not None and self.device_id.topic not in tpl.variables:
                raise ValueError(f"device_id.topic {self.device_id.topic!r} is not a variable of {t!r}")
        if (self.format == "json") != (self.payload is not None):
            raise ValueError("a json network server needs payload (where the bytes are); a binary one has none")
        if self.format == "binary" and self.device_id.topic is None:
            raise ValueError("a binary network server takes the device id from the topic")
        return self


def load_network_servers(directory: Path) -> list[NetworkServer]:
    out: list[NetworkServer] = []
    for f in sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml")):
        try:
            data = yaml.safe_load(f.read_text(encoding="utf-8"))
            out.append(NetworkServer.model_validate(data))
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise NetworkServerError(f"{f}: {exc}") from None
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise NetworkServerError(f"{directory}: network server names repeat: {', '.join(sorted(names))}")
    return out


class BoundProfile(CompiledProfile):
    """A device profile behind one network server (and one of its topics)."""

    def __init__(self, spec: DeviceProfile, server: NetworkServer) -> None:
        super().__init__(spec)
        self.server = server
        self._kind = f"{spec.format}@{server.name}"
        self._payload_path = parse_path(server.payload.path) if server.payload else None
        self._fields: list[tuple[str, list[tuple[Segment, ...]]]] = [
            (k, [parse_path(p) for p in paths]) for k, paths in server.fields.items()
        ]

    @property
    def envelope_kind(self) -> tuple[str, bool]:
        # Profiles behind one server share its parsed envelope; two servers never share one.
        return self._kind, False

    def envelope(self, payload: bytes) -> Any:
        if self.server.format == "binary":
            return payload
        doc = super().envelope(payload)
        if not isinstance(doc, dict):
            raise DecodeError(f"{self.server.name}: expected a JSON object")
        doc = dict(doc)
        doc["network"] = self._network(doc)
        return doc

    def complete(self, envelope: Any) -> Any:
        if self.server.format == "binary":
            doc = super().complete(envelope)
            doc["network"] = {"server": self.server.name}
            return doc
        if isinstance(envelope, dict) and self._payload_path is not None:
            blob = resolve(envelope, self._payload_path)
            if blob is MISSING or blob is None or blob == "":
                # an uplink without application data (MAC commands on port 0, an empty confirmed frame;
                # TTS omits empty fields): the device is alive and says nothing, which is not an error
                return {**envelope, "decoded": {}}
        return super().complete(envelope)

    def _network(self, doc: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"server": self.server.name}
        for key, paths in self._fields:
            for p in paths:
                v = resolve(doc, p)
                if v is not MISSING and v is not None:
                    # EUIs are compared lower-case (ChirpStack's topics carry them so; TTS sends upper)
                    out[key] = v.lower() if key == "dev_eui" and isinstance(v, str) else v
                    break
        return out


def bind(spec: DeviceProfile, servers: list[NetworkServer]) -> list[CompiledProfile]:
    """One compiled profile per (server, topic) of the device profile's network family."""
    assert spec.network is not None and spec.binary is not None
    out: list[CompiledProfile] = []
    for server in servers:
        if server.family != spec.network:
            continue
        binary = spec.binary.model_copy(update={
            "path": server.payload.path if server.payload else None,
            "encoding": server.payload.encoding if server.payload else "base64",
        })
        for topic in server.topics:
            bound = spec.model_copy(update={
                "topic": topic,
                "device_id": server.device_id,
                "format": server.format,
                "binary": binary,
                "timestamp": TimestampSpec(path="network.time") if "time" in server.fields else None,
            })
            out.append(BoundProfile(bound, server))
    return out
