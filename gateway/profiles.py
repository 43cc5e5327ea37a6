"""Loading device profiles from a directory and choosing the profile for a message."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.codecs import CodecConfigError
from gateway.decoder import CompiledProfile, DecodeError
from gateway.network_servers import NETWORK_SERVER_DIR, NetworkServer, NetworkServerError, bind, load_network_servers
from gateway.profile_schema import DeviceProfile

DEFAULT_PROFILE_DIR = Path(__file__).resolve().parent.parent / "device_profiles"
# libyaml's safe loader when PyYAML was built with it: the pure-Python one takes about a second for the
# shipped profiles, on every gateway, worker and CLI start.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ProfileError(ValueError):
    """A profile file is unreadable or invalid; the message names the file and the field."""


class NoProfileError(DecodeError):
    """No profile claims the message."""


def load_profile_file(path: Path) -> DeviceProfile:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile is a YAML mapping")
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {exc}") from None


def load_profiles(directory: Path = DEFAULT_PROFILE_DIR) -> list[CompiledProfile]:
    """Every profile in ``directory``; a ``network`` profile once per network server of its family
    (``directory/network-servers/*.yaml``), all under the profile's one name."""
    files = sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    if not files:
        raise ProfileError(f"{directory}: no *.yaml profiles")
    out: list[CompiledProfile] = []
    seen: dict[str, Path] = {}
    servers: list[NetworkServer] | None = None
    for f in files:
        spec = load_profile_file(f)
        if spec.name in seen:
            raise ProfileError(f"{f}: profile name {spec.name!r} already used by {seen[spec.name]}")
        seen[spec.name] = f
        try:
            if spec.network is None:
                out.append(CompiledProfile(spec))
                continue
            if servers is None:
                servers = load_network_servers(directory / NETWORK_SERVER_DIR)
            bound = bind(spec, servers)
            if not bound:
                raise ProfileError(f"{f}: no network server of family {spec.network!r} in "
                                   f"{directory / NETWORK_SERVER_DIR}")
            out.extend(bound)
        except KeyError as exc:  # unknown codec
            raise ProfileError(f"{f}: {exc.args[0]}") from None
        except (CodecConfigError, NetworkServerError) as exc:
            raise ProfileError(f"{f}: {exc}") from None
    return out


@dataclass(slots=True)
class Match:
    profile: CompiledProfile
    doc: Any
    device_id: str


class ProfileSet:
    """All profiles, indexed for fast lookup by topic (MQTT) or by name (HTTP pushes, --profile)."""

    def __init__(self, profiles: Iterable[CompiledProfile]) -> None:
        # A network profile compiles once per network server: `variants` has them all, `by_name` the first
        # (their spec is the same apart from the envelope).
        self.variants: dict[str, list[CompiledProfile]] = {}
        for p in profiles:
            self.variants.setdefault(p.name, []).append(p)
        self.by_name = {name: ps[0] for name, ps in self.variants.items()}
        # Specific profiles first: higher priority, then more `requires`, then name for stability.
        self._mqtt = sorted(
            (p for ps in self.variants.values() for p in ps if p.topic is not None),
            key=lambda p: (-p.spec.priority, -len(p.requires), p.name),
        )
        self._topic_cache: dict[str, list[tuple[CompiledProfile, dict[str, str]]]] = {}
        # topic -> (registry snapshot, profile, device id) for devices whose id is in the topic
        self._assigned_cache: dict[str, tuple[Mapping[str, str], CompiledProfile, str]] = {}

    def subscriptions(self) -> list[str]:
        subs = {p.topic.subscription for p in self._mqtt if p.topic is not None}
        return sorted(subs)

    def candidates(self, topic: str) -> list[tuple[CompiledProfile, dict[str, str]]]:
        hit = self._topic_cache.get(topic)
        if hit is None:
            hit = []
            for p in self._mqtt:
                assert p.topic is not None
                vars_ = p.topic.match(topic)
                if vars_ is not None:
                    hit.append((p, vars_))
            if len(self._topic_cache) > 100_000:  # bounded: topics are per device, not per message
                self._topic_cache.clear()
            self._topic_cache[topic] = hit
        return hit

    def match(
        self,
        topic: str,
        payload: bytes,
        *,
        profile: str | None = None,
        raw_bytes: bool = False,
        assigned: Mapping[str, str] | None = None,
    ) -> Match:
        """Choose the profile for a message and parse it.

        ``profile`` forces one profile (HTTP push endpoints, ``anxin decode --profile``). Otherwise the
        registry's assignment (``assigned``: device id -> profile name) wins among the profiles whose
        topic template matches; failing that, the first profile whose ``requires`` hold.
        """
        if profile is not None:
            named = self.variants.get(profile)
            if not named:
                raise NoProfileError(f"unknown profile {profile!r}")
            # the variant whose topic this is (ChirpStack or The Things Stack...), else the first
            p = next((v for v in named if v.topic is not None and v.topic.match(topic) is not None), named[0])
            vars_ = p.topic.match(topic) if p.topic is not None else None
            doc = p.parse(payload, raw_bytes)
            return Match(p, doc, p.device_id(doc, vars_))
        if assigned and not raw_bytes:
            hit = self._assigned_cache.get(topic)
            if hit is not None and hit[0] is assigned:  # same registry snapshot: skip the search
                p, dev = hit[1], hit[2]
                return Match(p, p.complete(p.envelope(payload)), dev)
        cands = self.candidates(topic)
        if not cands:
            raise NoProfileError(f"no profile matches topic {topic!r}")
        def document(p: CompiledProfile, env: Any) -> Any:
            return p.parse(payload, True) if raw_bytes else p.complete(env)

        errors: dict[str, list[str]] = {}  # reason -> profiles that gave it (a shared envelope fails once)
        envelopes: dict[tuple[str, bool], Any] = {}
        ready: list[tuple[CompiledProfile, Any, str]] = []
        for p, vars_ in cands:
            kind = p.envelope_kind
            if kind not in envelopes:
                try:
                    envelopes[kind] = {"decoded": None} if raw_bytes else p.envelope(payload)
                except DecodeError as exc:
                    envelopes[kind] = exc
            env = envelopes[kind]
            try:
                if isinstance(env, DecodeError):
                    raise env
                dev = p.device_id(env, vars_)
            except DecodeError as exc:
                errors.setdefault(str(exc), []).append(p.name)
                continue
            if assigned and assigned.get(dev) == p.name:  # the registry knows: only its codec runs
                if p.spec.device_id.topic is not None:
                    if len(self._assigned_cache) > 100_000:
                        self._assigned_cache.clear()
                    self._assigned_cache[topic] = (assigned, p, dev)
                try:
                    return Match(p, document(p, env), dev)
                except DecodeError as exc:
                    # never guess another model for a device the registry names (a WS301's door frame
                    # would read as a WS303 leak): its own profile's reason is the dead letter's
                    raise DecodeError(f"{p.name} (assigned to {dev}): {exc}") from None
            ready.append((p, env, dev))
        for p, env, dev in ready:
            if not p.spec.auto_select:  # chosen by the registry only: do not run its codec to guess
                continue
            try:
                doc = document(p, env)
            except DecodeError as exc:
                errors.setdefault(str(exc), []).append(p.name)
                continue
            if p.accepts(doc):
                return Match(p, doc, dev)
        if errors:
            raise DecodeError("; ".join(_reason(msg, names) for msg, names in errors.items()))
        raise NoProfileError(
            f"topic {topic!r} matches {', '.join(p.name for p, _ in cands)} but the payload fits none "
            "(pass --profile or assign the device a profile in the registry)"
        )


def _reason(message: str, profiles: list[str]) -> str:
    if len(profiles) == 1:
        return f"{profiles[0]}: {message}"
    return f"{message} ({len(profiles)} profiles of this topic: {', '.join(profiles)})"
