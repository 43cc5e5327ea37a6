"""MQTT accounts and ACL for mosquitto, made from the registry file and the device profiles.

The registry YAML (the file ``anxin registry-import`` reads) names the accounts; it holds password hashes
only (``$7$``, mosquitto 2.0's PBKDF2-SHA512), never a plaintext password, and the database never sees them:
the broker's files are made from this one file, so there is one place to add a device and its account.

- A device that connects itself (Tasmota, Shelly, a generic JSON device) has ``mqtt: {password_hash: ...}``
  (username: the device id unless ``mqtt.username`` says otherwise). It may WRITE only its own topics: every
  topic a profile reads for its id (its profile's, every network server's for a LoRaWAN profile, and its
  companion profiles': availability, LWT, Shelly Gen1's other sensors) plus its last will.
- A device behind a gateway bridge (zigbee2mqtt, a LoRaWAN network server) has ``via: <bridge id>``. The
  bridge (``mqtt.bridges``) may WRITE only the topics of its own devices under its ``base_topic`` (the network
  servers whose topics lie there; zigbee2mqtt's ``{base}`` is the base topic), plus
  its own status topics (zigbee2mqtt: ``<base>/bridge/#``). A bridge of institution A therefore cannot
  publish to a device topic of institution B even when both use the base topic ``zigbee2mqtt``.
- Gateway accounts (``mqtt.gateways``) may READ every topic the profiles subscribe to.
- No device or bridge account may read anything, and anonymous clients are refused by the broker config.

mosquitto 2.0's acl_file does not check SUBSCRIBE at all (src/security_default.c: "FIXME - implement ACL
subscription strings"): any account can join a shared group, and the broker then drops that member's turn
of the group's messages because it may not read them. Hence a secret group name with the acl_file, or
"strict mode": the same accounts for the dynamic security plugin, which checks SUBSCRIBE (README,
"Broker security").
"""

from __future__ import annotations

import base64
import grp
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway.decoder import CompiledProfile
from gateway.topics import compile_template

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for $7$
SALT_BYTES = 12  # as mosquitto_passwd; the dynamic security plugin accepts exactly 12
HASH_BYTES = 64  # SHA-512 output size, as mosquitto_passwd

# Last wills no profile reads: a device's CONNECT is refused when it may not write its will topic. (Wills that
# profiles read, Tasmota tele/<id>/LWT, Shelly Gen1 shellies/<id>/online, zigbee2mqtt <base>/<id>/availability,
# come with the device's companion topics, see device_topics.)
LAST_WILL_TOPICS: dict[str, tuple[str, ...]] = {
    "{device}/events/rpc": ("{device}/online",),  # Shelly gen2: <prefix>/online is its last will
}
# Topics a bridge publishes about itself, under its base topic.
BRIDGE_OWN_TOPICS: dict[str, tuple[str, ...]] = {
    "zigbee2mqtt": ("{base}/bridge/#",),
}

_HASH = re.compile(r"^\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")


class BrokerConfigError(ValueError):
    """The registry file cannot be turned into broker accounts (message says which entry and why)."""


class Role(StrEnum):
    GATEWAY = "gateway"
    BRIDGE = "bridge"
    DEVICE = "device"


@dataclass(frozen=True)
class Account:
    username: str
    password_hash: str
    role: Role
    write: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    note: str = ""


@dataclass
class BrokerAccess:
    accounts: list[Account]
    warnings: list[str] = field(default_factory=list)

    def password_file(self) -> str:
        return "".join(f"{a.username}:{a.password_hash}\n" for a in self.accounts)

    def dynamic_security(self) -> dict[str, Any]:
        """The same accounts for mosquitto's dynamic security plugin ("strict mode"), which, unlike the
        acl_file, checks SUBSCRIBE: only gateway accounts may subscribe, so nobody else can join a
        shared group. The plugin reads this file at start only (no SIGHUP reload)."""
        clients: list[dict[str, Any]] = []
        roles: list[dict[str, Any]] = []
        for a in self.accounts:
            m = _HASH.match(a.password_hash)
            assert m is not None  # checked when the account was made
            rolename = f"anxin-{a.role.value}-{a.username}"
            acls = [{"acltype": "publishClientSend", "topic": t, "allow": True} for t in a.write]
            for t in a.read:  # the gateway subscribes plainly or in shared groups ($share/<group>/<filter>)
                acls += [{"acltype": "subscribePattern", "topic": t, "allow": True},
                         {"acltype": "subscribePattern", "topic": f"$share/+/{t}", "allow": True},
                         {"acltype": "publishClientReceive", "topic": t, "allow": True}]
            roles.append({"rolename": rolename, "textdescription": a.note, "acls": acls})
            clients.append({"username": a.username, "textdescription": a.note, "iterations": int(m.group(1)),
                            "salt": m.group(2), "password": m.group(3), "roles": [{"rolename": rolename}]})
        return {
            "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                                 "subscribe": False, "unsubscribe": True},
            "clients": clients, "groups": [], "roles": roles,
        }

    def acl_file(self) -> str:
        lines = ["# Generated by `anxin broker-config` from the registry file: do not edit by hand.",
                 "# No pattern lines: an account not listed here may neither read nor write."]
        for a in self.accounts:
            lines += ["", f"# {a.role.value}: {a.note}" if a.note else f"# {a.role.value}", f"user {a.username}"]
            lines += [f"topic read {t}" for t in a.read]
            lines += [f"topic write {t}" for t in a.write]
        return "\n".join(lines) + "\n"


# -- passwords ----------------------------------------------------------------------------------------
def hash_password(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """mosquitto 2.0's password file hash: ``$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>``.

    The salt is 12 printable random characters (72 bits) rather than raw bytes, so EMQX, which takes a
    salt as text, can check the same hash."""
    salt = secrets.token_urlsafe(SALT_BYTES * 3 // 4).encode() if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, password_hash: str) -> bool:
    m = _HASH.match(password_hash)
    if not m:
        return False
    salt, expected = base64.b64decode(m.group(2)), base64.b64decode(m.group(3))
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(m.group(1)), len(expected))
    return hmac.compare_digest(digest, expected)


# -- registry -> accounts --------------------------------------------------------------------------------
def broker_access(registry: Mapping[str, Any], profiles: Iterable[CompiledProfile]) -> BrokerAccess:
    mqtt_profiles = [p for p in profiles if p.topic is not None]
    # A network profile (LoRaWAN) is compiled once per network server, all under one name.
    variants: dict[str, list[CompiledProfile]] = {}
    for p in mqtt_profiles:
        variants.setdefault(p.name, []).append(p)
    mqtt = registry.get("mqtt") or {}
    accounts: list[Account] = []
    warnings: list[str] = []

    subscriptions = sorted({p.topic.subscription for p in mqtt_profiles if p.topic is not None})
    for g in mqtt.get("gateways") or []:
        accounts.append(Account(_username(g.get("username"), "mqtt.gateways"), _hash(g, "gateway"),
                                Role.GATEWAY, read=tuple(subscriptions), note="reads what the profiles subscribe to"))

    bridges: dict[str, dict[str, Any]] = {}
    for b in mqtt.get("bridges") or []:
        bid = str(b.get("id") or "")
        if not bid or bid in bridges:
            raise BrokerConfigError(f"mqtt.bridges: missing or repeated id {bid!r}")
        base = str(b.get("base_topic") or "").strip("/")
        if not base or any(c in base for c in "+#"):
            raise BrokerConfigError(f"bridge {bid}: base_topic must be a plain topic prefix, not {base!r}")
        own = [t.format(base=base) for t in BRIDGE_OWN_TOPICS.get(str(b.get("kind", "")), ())]
        bridges[bid] = {"entry": b, "base": base, "write": own, "devices": []}

    devices = registry.get("devices") or []
    device_ids = {str(d["id"]) for d in devices}
    for d in devices:
        device_id = str(d["id"])
        named = variants.get(str(d.get("profile") or ""), [])
        creds = d.get("mqtt")
        via = d.get("via")
        if not named:
            if creds or via:
                raise BrokerConfigError(f"device {device_id}: profile {d.get('profile')!r} has no MQTT topic")
            continue
        if creds and via:
            raise BrokerConfigError(f"device {device_id}: either its own mqtt account or via a bridge, not both")
        if "/" in device_id and device_id.split("/", 1)[0] in device_ids:
            # A device behind a device (a Zigbee sensor behind a Tasmota, a DS18B20 probe): its messages
            # arrive on its parent's topic, written with the parent's account.
            if creds or via:
                raise BrokerConfigError(f"device {device_id}: a sub-device publishes through its parent "
                                        f"{device_id.split('/', 1)[0]}; give the parent the account or bridge")
            continue
        topic_vars = {str(k): str(v) for k, v in (d.get("topic_vars") or {}).items()}
        known = {v for p in named if p.topic is not None for v in p.topic.variables}
        unknown = set(topic_vars) - known
        if unknown:
            raise BrokerConfigError(f"device {device_id}: topic_vars {sorted(unknown)} are in no topic of "
                                    f"profile {named[0].name}")
        bridge = bridges.get(str(via)) if via else None
        if via and bridge is None:
            raise BrokerConfigError(f"device {device_id}: via {via!r}, which is not in mqtt.bridges")
        if bridge is not None:  # zigbee2mqtt's {base}/{device}: the bridge's base topic
            topic_vars.setdefault("base", bridge["base"])
        per_variant = [device_topics(p, device_id, topic_vars, mqtt_profiles) for p in named]
        if bridge is not None:
            # Only the network servers (variants) whose topics lie under the bridge's base topic.
            base = bridge["base"]
            inside = [ts for ts in per_variant if all(t == base or t.startswith(base + "/") for t in ts)]
            if not inside:
                outside = next(t for t in per_variant[0] if not (t == base or t.startswith(base + "/")))
                raise BrokerConfigError(f"device {device_id}: topic {outside} is not under bridge {via}'s "
                                        f"base topic {base}")
            bridge["write"].extend(t for ts in inside for t in ts)
            bridge["devices"].append(device_id)
        elif creds:
            # A device that connects itself: every variant's topics (which server envelope it speaks is
            # not in the registry; each of them names only this device).
            topics = tuple(dict.fromkeys(t for ts in per_variant for t in ts))
            username = _username(creds.get("username", device_id), f"device {device_id}")
            accounts.append(Account(username, _hash(creds, f"device {device_id}"), Role.DEVICE, write=topics,
                                    note=f"{device_id} ({d.get('institution', '')}, {named[0].name})"))
        else:
            warnings.append(f"device {device_id}: no MQTT account and no bridge: the broker refuses its messages "
                            f"/ 设备 {device_id} 没有 MQTT 账号也不经网关桥，其消息将被拒绝")

    for bid, bridge in bridges.items():
        b = bridge["entry"]
        write = tuple(dict.fromkeys(bridge["write"]))  # ordered, without repeats
        accounts.append(Account(_username(b.get("username", bid), f"bridge {bid}"), _hash(b, f"bridge {bid}"),
                                Role.BRIDGE, write=write,
                                note=f"{bid} ({b.get('institution', '')}, {len(bridge['devices'])} devices)"))

    seen: set[str] = set()
    for a in accounts:
        if a.username in seen:
            raise BrokerConfigError(f"MQTT username {a.username!r} is used twice")
        seen.add(a.username)
    return BrokerAccess(accounts, warnings)


def _id_prefix(profile: CompiledProfile) -> str | None:
    """The topic template up to the level naming the device (``shellies/{device}``, ``{base}/{device}``,
    ``application/{application_id}/device/{dev_eui}``); None when no level names it."""
    assert profile.topic is not None
    var = profile.spec.device_id.topic or ("device" if "device" in profile.topic.variables else None)
    if var is None:
        return None
    levels = profile.topic.template.split("/")
    for i, level in enumerate(levels):
        if level == f"{{{var}}}":
            return "/".join(levels[: i + 1])
    return None


def device_topics(profile: CompiledProfile, device_id: str, topic_vars: Mapping[str, str],
                  all_profiles: Iterable[CompiledProfile] = ()) -> tuple[str, ...]:
    """The topics a device publishes: its profile's template with its id (and ``topic_vars``) filled in,
    the other variables left as ``+``/``#``; the topics of its companion profiles, those that name a
    device at the same place (``shellies/{device}/sensor/battery`` and ``.../online`` beside
    ``shellies/{device}/sensor/smoke``, ``tele/{device}/LWT`` beside ``tele/{device}/SENSOR``,
    ``{base}/{device}/availability`` beside ``{base}/{device}``); and its last will (LAST_WILL_TOPICS)."""
    assert profile.topic is not None
    prefix = _id_prefix(profile)
    templates = [profile.topic]
    if prefix is not None:
        templates += [p.topic for p in all_profiles if p.topic is not None and p.topic not in templates
                      and _id_prefix(p) == prefix]
    templates += [compile_template(t) for t in LAST_WILL_TOPICS.get(profile.topic.template, ())]
    id_var = prefix.rsplit("/", 1)[-1][1:-1] if prefix is not None else None
    out: list[str] = []
    for tpl in templates:
        values = {k: v for k, v in topic_vars.items() if k in tpl.variables}
        if id_var is not None:
            values.setdefault(id_var, device_id)
        topic = tpl.filter_for(values)
        if topic is None or topic != topic.strip() or "\n" in topic:
            raise BrokerConfigError(f"device {device_id}: its id cannot stand in topic {tpl.template} "
                                    "(empty, or holds '/', '+', '#', a line break or edge spaces)")
        out.append(topic)
    return tuple(dict.fromkeys(out))


def _username(value: Any, where: str) -> str:
    name = str(value or "")
    # mosquitto reads "username:hash" lines and "user <name>" lines, trimming blanks; '#' starts a comment.
    if not name or name != name.strip() or name.startswith("#") or any(c in name for c in ":\n\r\0"):
        raise BrokerConfigError(f"{where}: bad MQTT username {name!r}")
    return name


def _hash(entry: Mapping[str, Any], where: str) -> str:
    value = str(entry.get("password_hash") or "")
    if "password" in entry:
        raise BrokerConfigError(f"{where}: put password_hash (from `anxin broker-config --hash-password`), "
                                "never a plaintext password, in the registry file")
    m = _HASH.match(value)
    if not m:
        raise BrokerConfigError(f"{where}: password_hash must be a mosquitto $7$ hash, got {value[:12]!r}...")
    # The dynamic security plugin silently skips a client whose salt or hash has another length.
    if len(base64.b64decode(m.group(2))) != SALT_BYTES or len(base64.b64decode(m.group(3))) != HASH_BYTES:
        raise BrokerConfigError(f"{where}: password_hash needs a {SALT_BYTES}-byte salt and a {HASH_BYTES}-byte hash")
    return value


# -- files and reload ---------------------------------------------------------------------------------
def write_files(access: BrokerAccess, out_dir: Path, group: str | None = None) -> list[Path]:
    """Write ``passwd``, ``acl`` and ``dynamic-security.json`` atomically (a reload never reads a
    half-written file), mode 0640.

    mosquitto reads them after dropping to its own user, so ``group`` (a name or a number, e.g. 1883 for
    the eclipse-mosquitto image) should be the broker's group; default: ``mosquitto`` where that group exists.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    gid = _gid(group)
    written = []
    dynsec = json.dumps(access.dynamic_security(), ensure_ascii=False, indent=1)
    for name, text in (("passwd", access.password_file()), ("acl", access.acl_file()),
                       ("dynamic-security.json", dynsec)):
        path = out_dir / name
        tmp = out_dir / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if gid is not None:
            try:
                os.chown(tmp, -1, gid)
            except PermissionError:
                raise BrokerConfigError(f"cannot give {path} to group {group}: run as root") from None
        os.replace(tmp, path)
        written.append(path)
    return written


def _gid(group: str | None) -> int | None:
    if group is None:
        if os.geteuid() != 0:  # only root may give a file to a group it is not in
            return None
        try:
            return grp.getgrnam("mosquitto").gr_gid
        except KeyError:
            return None
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise BrokerConfigError(f"no group {group!r} on this host") from None


def reload_broker(pid_file: Path) -> int:
    """SIGHUP: mosquitto re-reads password_file and acl_file; connected clients stay connected."""
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGHUP)
    return pid
