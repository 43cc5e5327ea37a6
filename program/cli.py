"""The ``anxin`` command line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from anxin.logging_setup import setup_logging
from anxin.model import Event, Reading
from gateway.decoder import DecodeError
from gateway.profiles import DEFAULT_PROFILE_DIR, NoProfileError, ProfileError, ProfileSet, load_profiles
from program.database import NoDatabase, open_database, remember_database

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("anxin")

EXIT_NO_PROFILE = 3
EXIT_MALFORMED = 4
EXIT_BAD_PROFILES = 5
EXIT_DEAD_LETTERS = 6  # decode --file: some lines would be dead-lettered
EXIT_USAGE = 2
EXIT_BAD_SETTINGS = 2


def _print_json(obj: object) -> None:
    sys.stdout.write(orjson.dumps(obj).decode() + "\n")


def _decode_file(args: argparse.Namespace, profiles: ProfileSet) -> int:
    """A capture, one message per line as ``mosquitto_sub -v`` prints it: a report per line, then a summary."""
    from gateway.capture import decode_capture, format_line, summary

    try:
        with open(args.file, encoding="utf-8", errors="replace") as f:
            reports = decode_capture(profiles, f, profile=args.profile)
    except OSError as exc:
        print(f"anxin decode: 无法读取 cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    for rep in reports:
        if args.json:
            _print_json(rep.as_dict())
        else:
            print(format_line(rep))
    print(summary(reports), file=sys.stderr if args.json else sys.stdout)
    return EXIT_DEAD_LETTERS if any(r.dead_letter for r in reports) else 0


def cmd_decode(args: argparse.Namespace) -> int:
    try:
        profiles = ProfileSet(load_profiles(args.profiles))
    except ProfileError as exc:
        print(f"anxin decode: invalid profiles: {exc}", file=sys.stderr)
        return EXIT_BAD_PROFILES
    if args.file is not None:
        return _decode_file(args, profiles)
    if args.topic is None:
        print("anxin decode: --topic is required with --payload / --payload-hex", file=sys.stderr)
        return EXIT_USAGE
    if args.payload_hex is not None:
        try:
            payload = bytes.fromhex(args.payload_hex.replace(" ", ""))
        except ValueError:
            print("anxin decode: --payload-hex is not hexadecimal", file=sys.stderr)
            return EXIT_MALFORMED
    else:
        payload = args.payload.encode()
    try:
        m = profiles.match(args.topic, payload, profile=args.profile, raw_bytes=args.payload_hex is not None)
        decoded = m.profile.decode(m.doc, m.device_id, datetime.now(UTC))
    except NoProfileError as exc:
        print(f"anxin decode: {exc}", file=sys.stderr)
        return EXIT_NO_PROFILE
    except DecodeError as exc:
        print(f"anxin decode: malformed payload: {exc}", file=sys.stderr)
        return EXIT_MALFORMED
    items: list[Reading | Event] = [*decoded.readings, *decoded.events]
    for item in items:
        _print_json({"profile": decoded.profile, **item.as_dict()})
    if not decoded.readings and not decoded.events:
        print(f"anxin decode: profile {decoded.profile} matched; the message carries no readings or events",
              file=sys.stderr)
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    try:
        profiles = load_profiles(args.profiles)
    except ProfileError as exc:
        print(f"invalid profile: {exc}", file=sys.stderr)
        return EXIT_BAD_PROFILES
    for p in profiles:
        where = p.spec.topic or f"POST /ingest/{p.name}"
        print(f"{p.name:32} {p.spec.kind:14} {where}")
    return 0


def cmd_registry_import(args: argparse.Namespace) -> int:
    from program.registry_file import RegistryFileError, import_registry

    try:
        data = yaml.safe_load(Path(args.file).read_text(encoding="utf-8"))
        names = {p.name for p in load_profiles(args.profiles)}
        url, sessions = open_database(create=True)
        n_inst, n_dev = import_registry(sessions, data, profiles=names)
    except OSError as exc:
        return _fail("registry-import", f"无法读取 cannot read {args.file}: {exc.strerror}")
    except yaml.YAMLError as exc:
        return _fail("registry-import", f"YAML 格式错误 not valid YAML: {str(exc).splitlines()[0]}")
    except (RegistryFileError, ProfileError, NoDatabase) as exc:
        return _fail("registry-import", str(exc))
    print(f"imported {n_inst} institutions, {n_dev} devices into {url}")
    return 0


def _fail(command: str, message: str) -> int:
    """The one line a user sees when a command cannot do its work."""
    print(f"anxin {command}: {message}", file=sys.stderr)
    return EXIT_USAGE


QUARTER = re.compile(r"^(\d{4})Q([1-4])$")


def cmd_drills(args: argparse.Namespace) -> int:
    from alerting.drills import drill_records

    m = QUARTER.match(args.quarter.strip().upper())
    if m is None:
        return _fail("drills", f"季度格式如 2026Q4 / a quarter looks like 2026Q4 (Q1-Q4), not {args.quarter!r}")
    try:
        _, sessions = open_database()
    except NoDatabase as exc:
        return _fail("drills", str(exc))
    records = drill_records(sessions, int(m.group(1)), int(m.group(2)))
    print("机构 Institution\t季度 Quarter\t演练 Drills\t演练报警 Drill alarms\t达标 Compliant"
          "\t未验证设备 Unverified devices")
    for r in records:
        print(f"{r.institution}\t{r.quarter}\t{r.drills}\t{r.drill_alarms}\t{'是 yes' if r.compliant else '否 NO'}"
              f"\t{r.unverified_devices}")
    return 0 if all(r.compliant for r in records) else 1


def cmd_devices(args: argparse.Namespace) -> int:
    """The device registry with each device's commissioning state; with --unverified, exit 1 when any
    device still waits for its test press to be seen end to end."""
    import sqlite3
    from zoneinfo import ZoneInfo

    import httpx
    from sqlalchemy.exc import SQLAlchemyError

    from alerting.commissioning import device_rows, telemetry_seen
    from anxin.config import Settings
    from anxin.db import Institution, Verification

    def local(at: datetime | None) -> str:
        return at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M") if at else "-"

    try:
        settings = Settings()
        _, sessions = open_database()
        if args.institution is not None:
            with sessions() as s:
                if s.get(Institution, args.institution) is None:
                    print(f"anxin devices: 没有此机构 no institution {args.institution!r}", file=sys.stderr)
                    return EXIT_USAGE
    except NoDatabase as exc:
        return _fail("devices", str(exc))
    except SQLAlchemyError as exc:
        return _fail("devices", f"数据库不可用 database unavailable: {exc.__class__.__name__}")
    try:
        seen = telemetry_seen(settings)
    except (httpx.HTTPError, sqlite3.Error, KeyError, ValueError) as exc:  # events still tell when it was seen
        print(f"anxin devices: 遥测库不可用 telemetry store unavailable ({exc.__class__.__name__}): "
              "last seen from events only", file=sys.stderr)
        seen = {}
    try:
        rows = device_rows(sessions, unverified_only=args.unverified, institution=args.institution,
                           readings_seen=seen)
    except SQLAlchemyError as exc:
        print(f"anxin devices: 数据库不可用 database unavailable: {exc.__class__.__name__}", file=sys.stderr)
        return EXIT_USAGE
    print("设备 Device\t机构 Institution\t房间 Room\t配置 Profile\t验证 Verification\t最后上报 Last seen (北京时间)")
    for r in rows:
        state = (f"已验证 verified {local(r.verified_at)} by {r.verified_by} (#{r.verified_incident_id})"
                 if r.verification is Verification.VERIFIED else "未验证 UNVERIFIED")
        print(f"{r.device_id}\t{r.institution or r.institution_id or '-'}\t{r.room or '-'}\t{r.profile or '-'}"
              f"\t{state}\t{local(r.last_seen)}")
    unverified = sum(r.verification is Verification.UNVERIFIED for r in rows)
    print(f"{len(rows)} 台设备 devices, {unverified} 台未验证 unverified", file=sys.stderr)
    return 1 if args.unverified and rows else 0


def cmd_silence(args: argparse.Namespace) -> int:
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from alerting import silences

    start = datetime.now(UTC)
    types = [t.strip() for t in args.types.split(",") if t.strip()] if args.types else []
    try:
        _, sessions = open_database(create=True)
        with sessions.begin() as s:
            x = silences.add(s, kind="maintenance" if args.maintenance else "silence", institution=args.institution,
                             device=args.device, types=types, starts_at=start,
                             ends_at=start + timedelta(minutes=args.minutes), created_by=args.by, reason=args.reason)
            local = x.ends_at.astimezone(ZoneInfo("Asia/Shanghai"))
            print(f"{x.kind} {x.id}: until {local:%Y-%m-%d %H:%M} (北京时间); "
                  "panic, smoke and gas alarms are never held back")
    except (ValueError, NoDatabase) as exc:
        return _fail("silence", str(exc))
    return 0


def _read_password(args: argparse.Namespace) -> str:
    """From standard input when it is not a terminal (scripts), else asked twice without echo."""
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("密码 Password: ")
    if getpass.getpass("再输一次 Again: ") != first:
        raise ValueError("两次输入不一致 / the two entries differ")
    return first


def cmd_user(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from anxin.db import Institution
    from api.models import Contractor, District, Role, User
    from api.security import add_user, create_api_key, hash_password

    try:
        _, sessions = open_database(create=args.action == "add")
        with sessions.begin() as s:
            if args.action == "list":
                print("用户 User\t角色 Role\t范围 Scope\t姓名 Name\t状态 Active")
                for u in s.scalars(select(User).order_by(User.username)):
                    scope = u.institution_id or u.contractor_id or ",".join(u.districts or []) or "*"
                    print(f"{u.username}\t{u.role}\t{scope}\t{u.display_name}\t{'yes' if u.active else 'no'}")
                return 0
            if args.username is None:
                return _fail("user", "需要用户名 / a username is needed")
            if args.action == "add":
                role = Role(args.role)
                if args.institution and s.get(Institution, args.institution) is None:
                    return _fail("user", f"没有机构 / no institution {args.institution!r}")
                if args.contractor and s.get(Contractor, args.contractor) is None:
                    return _fail("user", f"没有安保公司 / no contractor {args.contractor!r}")
                districts = [d.strip() for d in (args.districts or "").split(",") if d.strip()]
                unknown = [d for d in districts if s.get(District, d) is None
                           and s.scalar(select(Institution.id).where(Institution.district == d).limit(1)) is None]
                if unknown:
                    return _fail("user", f"没有辖区 / unknown district(s): {', '.join(unknown)}")
                add_user(s, args.username, _read_password(args), role, display_name=args.name or "",
                         institution_id=args.institution, contractor_id=args.contractor, districts=districts,
                         lang=args.lang)
                print(f"user {args.username} ({role.value}) added")
                return 0
            user = s.scalar(select(User).where(User.username == args.username))
            if user is None:
                return _fail("user", f"没有用户 / no user {args.username!r}")
            if args.action == "password":
                user.password_hash = hash_password(_read_password(args))
                user.failed_logins, user.locked_until = 0, None
                print(f"password of {args.username} changed")
            elif args.action == "disable":
                user.active = False
                print(f"user {args.username} disabled")
            elif args.action == "key":
                print(create_api_key(s, user, args.key_name))
                print("只显示这一次 / shown once: keep it now (Authorization: Bearer <key>)", file=sys.stderr)
    except (ValueError, NoDatabase) as exc:
        return _fail("user", str(exc))
    return 0


def _serve(gateway_settings_overrides: dict[str, object], *, embedded_broker: bool, simulate: bool,
           registry_file: Path | None, demo_users: Callable[[sessionmaker[Session]], None] | None = None) -> int:
    import uvicorn

    from anxin.config import Settings
    from gateway.embedded_broker import EmbeddedBroker
    from gateway.simulator import Simulator
    from gateway.workers import WorkerSupervisor, main_ingests, start_extra_workers
    from program.registry_file import import_registry
    from program.system import Anxin
    from program.web import build_app

    settings = Settings(**gateway_settings_overrides)  # type: ignore[arg-type]
    broker = None
    if embedded_broker:
        broker = EmbeddedBroker(settings.mqtt_host, settings.mqtt_port)
        broker.start()
    gw = Anxin(settings)
    if registry_file is not None:
        text = registry_file.read_text(encoding="utf-8").replace("{http}", f"http://127.0.0.1:{settings.http_port}")
        import_registry(gw.sessions, yaml.safe_load(text))
        gw.registry.refresh()
    if demo_users is not None:
        demo_users(gw.sessions)
    remember_database(settings.database_url)
    if not main_ingests(settings):
        # This process now only carries alarms (lane, alerting, HTTP): hand the GIL between its threads
        # every 1 ms rather than 5 ms, since each alarm passes through several of them.
        sys.setswitchinterval(0.001)
    gw.start(mqtt=main_ingests(settings))
    workers = WorkerSupervisor(settings, start_extra_workers(settings)).start()
    if not main_ingests(settings):
        gw.workers = workers  # /healthz reports the workers' processes instead of this one's session
    sim = None
    if simulate:
        sim = Simulator(settings.mqtt_host, settings.mqtt_port, period_s=2.0, alarm_every_s=30.0)
        threading.Thread(target=sim.run, name="simulator", daemon=True).start()
    server = _Server(uvicorn.Config(build_app(gw), host=settings.http_host, port=settings.http_port,
                                    log_level="warning"))
    if settings.demo_inbox:
        print(f"Demo receivers (police, fire, contractor, director): http://127.0.0.1:{settings.http_port}/demo/inbox")
    print(f"Anxin gateway: MQTT {settings.mqtt_host}:{settings.mqtt_port}, "
          f"console http://{settings.http_host}:{settings.http_port}/ (API docs /docs, /metrics, /healthz, "
          "POST /ingest/<profile>), "
          f"telemetry -> {settings.telemetry_sink}, database {settings.database_url}. Ctrl-C stops.")
    try:
        server.run()
    finally:
        # Bounded: whatever hangs past the limit, the process exits (its workers die with it, see
        # gateway/workers.py) and what was not acknowledged is delivered again by the broker.
        watchdog = threading.Timer(SHUTDOWN_LIMIT_S, _give_up)
        watchdog.daemon = True
        watchdog.start()
        log.info("stopping: HTTP closed, stopping ingest workers, flushing telemetry and events")
        if sim is not None:
            sim.stop()
        workers.stop(timeout=SHUTDOWN_LIMIT_S / 3)
        gw.stop()
        if broker is not None:
            broker.stop()
        watchdog.cancel()
        log.info("stopped cleanly")
    return 0


SHUTDOWN_LIMIT_S = 45.0


def _give_up() -> None:
    log.error("shutdown took longer than %.0f s; exiting now (unacknowledged messages will be redelivered)",
              SHUTDOWN_LIMIT_S)
    logging.shutdown()
    os._exit(70)


class _Server:
    """uvicorn's server with our own SIGTERM/SIGINT handling: uvicorn re-raises the signal once it has
    stopped, which killed the process before the workers were stopped and the buffers flushed."""

    def __init__(self, config: object) -> None:
        import uvicorn

        self._server = uvicorn.Server(config)  # type: ignore[arg-type]
        self._server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]

    def run(self) -> None:
        def on_signal(signum: int, _frame: object) -> None:
            if self._server.should_exit:  # asked again while stopping: stop waiting
                log.warning("received %s again: exiting at once", signal.Signals(signum).name)
                _give_up()
            log.info("received %s: shutting down", signal.Signals(signum).name)
            self._server.should_exit = True

        # Kept until the process exits, so a signal during the clean-up cannot kill it half way.
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self._server.run()


def settings_problem() -> str | None:
    """Why ``anxin gateway`` must not start with the environment's settings (one line), or None."""
    from pydantic import ValidationError

    from anxin.config import Settings, check_secrets

    try:
        return check_secrets(Settings())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        return f"ANXIN_{where.upper()}: {first['msg']}" if where else first["msg"]


def cmd_gateway(args: argparse.Namespace) -> int:
    problem = settings_problem()
    if problem is not None:
        print(f"anxin gateway: {problem}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    return _serve({}, embedded_broker=False, simulate=False, registry_file=None)


def demo_secrets(data: Path) -> dict[str, Any]:
    """The demo's own random secrets, kept in its data directory so acknowledge links and tokens
    survive a restart of the demo."""
    import secrets

    from demo.users import demo_passwords

    path = data / "secrets.json"
    try:
        kept = orjson.loads(path.read_bytes())
        if isinstance(kept, dict) and {"alerting_secret", "api_token", "ingest_token", "passwords"} <= kept.keys():
            return kept
    except (OSError, orjson.JSONDecodeError):
        pass
    made = {"alerting_secret": secrets.token_urlsafe(32), "api_token": secrets.token_urlsafe(18),
            "ingest_token": secrets.token_urlsafe(18), "passwords": demo_passwords()}
    data.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(orjson.dumps(made, option=orjson.OPT_INDENT_2))
    return made


def cmd_demo(args: argparse.Namespace) -> int:
    from demo.users import DEMO_USERS, ensure_demo_users

    secrets = demo_secrets(args.data)
    overrides: dict[str, object] = {
        "mqtt_port": args.mqtt_port, "http_port": args.http_port, "mqtt_protocol": "3.1.1",
        "mqtt_shared_group": "", "telemetry_sink": "sqlite", "database_url": f"sqlite:///{args.data}/anxin.db",
        "sqlite_telemetry_path": args.data / "telemetry.db", "spool_dir": args.data / "spool",
        "ingest_tokens": [secrets["ingest_token"]], "demo_inbox": True,
        "public_url": f"http://127.0.0.1:{args.http_port}", "alerting_secret": secrets["alerting_secret"],
        "api_tokens": {"演示值班员 demo operator": secrets["api_token"]},
    }
    base = f"http://127.0.0.1:{args.http_port}"
    passwords: dict[str, str] = secrets["passwords"]
    people = "\n".join(f"  {u.role.value:12} {u.username:12} {passwords[u.username]:14} {u.display_name}"
                       for u in DEMO_USERS)
    print(f"Anxin demo console: {base}/  (API docs {base}/docs)\n"
          f"Log in as (role, username, password; kept in {args.data / 'secrets.json'}):\n{people}\n"
          f"Machine tokens:\n"
          f"  incidents API: curl -H 'Authorization: Bearer {secrets['api_token']}' {base}/api/v1/incidents\n"
          f"  HTTP ingest:   curl -H 'Authorization: Bearer {secrets['ingest_token']}' -d @payload.json "
          f"{base}/ingest/<profile>")
    return _serve(overrides, embedded_broker=True, simulate=True, registry_file=args.registry,
                  demo_users=lambda sessions: ensure_demo_users(sessions, passwords))


def cmd_simulate(args: argparse.Namespace) -> int:
    from gateway.simulator import Simulator

    sim = Simulator(args.host, args.port, period_s=args.period, alarm_every_s=args.alarm_every)
    # The simulator runs on a thread of its own: a signal handler that set its stop Event while this
    # thread waited on that same Event could deadlock.
    runner = threading.Thread(target=sim.run, args=(args.duration,), name="simulator", daemon=True)
    signal.signal(signal.SIGTERM, lambda *_: sim.stop())
    signal.signal(signal.SIGINT, lambda *_: sim.stop())
    runner.start()
    while runner.is_alive():
        runner.join(0.2)
    print(f"published {sim.published} messages")
    return 0


def cmd_broker_config(args: argparse.Namespace) -> int:
    from gateway.broker_access import BrokerConfigError, broker_access, hash_password, reload_broker, write_files

    if args.hash_password:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            print("no password on standard input / 标准输入没有密码", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    if args.registry is None or args.out is None:
        print("broker-config needs --registry FILE and --out DIR / 需要 --registry 和 --out", file=sys.stderr)
        return 2
    try:
        data = yaml.safe_load(args.registry.read_text(encoding="utf-8")) or {}
        access = broker_access(data, load_profiles(args.profiles))
        written = write_files(access, args.out, args.group)
        for w in access.warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(f"{len(access.accounts)} MQTT accounts: wrote {', '.join(str(p) for p in written)}")
        if args.reload_pid is not None:
            pid = reload_broker(args.reload_pid)
            print(f"mosquitto (pid {pid}) told to reload (SIGHUP)")
    except (BrokerConfigError, ProfileError, OSError, ValueError, KeyError, yaml.YAMLError) as exc:
        print(f"broker-config failed / 生成失败: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anxin", description="Anxin (安心) safety-monitoring gateway")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("decode", help="decode one payload (JSON lines) or a capture file (report per line)")
    p.add_argument("--topic", help="MQTT topic (or any label for HTTP pushes with --profile)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--payload", help="payload text (JSON)")
    src.add_argument("--payload-hex", help="raw device bytes in hex (binary codecs, e.g. LoRaWAN frames)")
    src.add_argument("--file", type=Path, help="capture: one 'topic payload' per line, as mosquitto_sub -v prints")
    p.add_argument("--json", action="store_true", help="with --file: one JSON object per line (summary on stderr)")
    p.add_argument("--profile", help="profile name, where the topic alone cannot tell the model")
    p.add_argument("--profiles", type=Path, default=DEFAULT_PROFILE_DIR, help="profile directory")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("profiles", help="validate and list device profiles")
    p.add_argument("--profiles", type=Path, default=DEFAULT_PROFILE_DIR)
    p.set_defaults(func=cmd_profiles)

    p = sub.add_parser("registry-import", help="import districts, institutions, devices, contractors, contacts "
                       "from a YAML file")
    p.add_argument("file", type=Path)
    p.add_argument("--profiles", type=Path, default=DEFAULT_PROFILE_DIR, help="profile directory (names are checked)")
    p.set_defaults(func=cmd_registry_import)

    p = sub.add_parser("drills", help="quarterly drill record per institution (exit 1 if one is missing)")
    p.add_argument("quarter", help="e.g. 2026Q4")
    p.set_defaults(func=cmd_drills)

    p = sub.add_parser("devices", help="registered devices and their commissioning state (exit 1 with "
                       "--unverified if any)")
    p.add_argument("--unverified", action="store_true", help="only devices whose test press was not seen end to end")
    p.add_argument("--institution", help="only this institution (id)")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("silence", help="hold back non-life-safety notifications for a while (silence / maintenance)")
    p.add_argument("--institution", help="only this institution (default: all)")
    p.add_argument("--device", help="only this device")
    p.add_argument("--types", help="event type globs, comma-separated (default: all), e.g. 'fault.*,device.*'")
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--by", default="cli", help="who sets it (audit trail)")
    p.add_argument("--maintenance", action="store_true", help="a maintenance window rather than a silence")
    p.set_defaults(func=cmd_silence)

    p = sub.add_parser("broker-config", help="mosquitto accounts and ACL from the registry file")
    p.add_argument("--registry", type=Path, help="registry YAML with the MQTT accounts (password hashes only)")
    p.add_argument("--out", type=Path, help="directory for passwd, acl and dynamic-security.json")
    p.add_argument("--profiles", type=Path, default=DEFAULT_PROFILE_DIR)
    p.add_argument("--group", help="group that may read the files (the broker's; default: mosquitto, if root)")
    p.add_argument("--reload-pid", type=Path, metavar="PIDFILE", help="send SIGHUP to the mosquitto in this pid file")
    p.add_argument("--hash-password", action="store_true", help="print the $7$ hash of a password read from stdin")
    p.set_defaults(func=cmd_broker_config)

    p = sub.add_parser("user", help="console users: add, list, password, disable, key (an API key)")
    p.add_argument("action", choices=["add", "list", "password", "disable", "key"])
    p.add_argument("username", nargs="?")
    p.add_argument("--role", choices=["admin", "commission", "contractor", "institution"], default="institution")
    p.add_argument("--institution", help="role institution: the institution id")
    p.add_argument("--contractor", help="role contractor: the contractor id")
    p.add_argument("--districts", help="role commission: district names, comma-separated")
    p.add_argument("--name", help="display name (timelines show it)")
    p.add_argument("--lang", choices=["zh", "en"], default="zh")
    p.add_argument("--key-name", default="api", help="key: a name for the new API key")
    p.set_defaults(func=cmd_user)

    p = sub.add_parser("gateway", help="run the gateway (configuration from ANXIN_* environment variables)")
    p.set_defaults(func=cmd_gateway)

    p = sub.add_parser("demo", help="embedded broker + gateway on SQLite + device simulator")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--data", type=Path, default=Path("var/demo"))
    p.add_argument("--registry", type=Path, default=Path(__file__).resolve().parent.parent / "demo" / "registry.yaml")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulate", help="publish simulated device traffic to a broker")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--period", type=float, default=5.0)
    p.add_argument("--alarm-every", type=float, default=60.0)
    p.add_argument("--duration", type=float, default=None)
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:  # Alembic's start-up lines; the schema change itself is logged in one line
        logging.getLogger("alembic").setLevel(logging.WARNING)
        if args.command not in ("gateway", "demo"):  # a command's own output says which database it used
            logging.getLogger("anxin.db").setLevel(logging.WARNING)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
