"""Configuration: environment variables prefixed ``ANXIN_`` (or a ``.env`` file); see README."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from alerting.routing import DEFAULT_ROUTES
from alerting.thresholds import DEFAULT_THRESHOLDS
from gateway.profiles import DEFAULT_PROFILE_DIR


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANXIN_", env_file=".env", extra="ignore")

    # Relational store: institutions, devices, events, dead letters (later incidents).
    database_url: str = "sqlite:///var/anxin.db"
    profiles_dir: Path = DEFAULT_PROFILE_DIR

    # MQTT source.
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_client_id: str = "anxin-gateway-1"
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    # "" (default): plain subscriptions, which mosquitto keeps across its own restarts (it forgets shared
    # ones, and with them everything published before the gateway subscribes again); several workers on
    # one host then split the topics by hash. Set a group (e.g. "anxin") only to spread the load over
    # several gateway instances, on a broker that keeps shared subscriptions (an EMQX cluster).
    mqtt_shared_group: str = ""
    mqtt_receive_maximum: int = Field(default=20000, ge=1, le=65535)
    mqtt_session_expiry_s: int = 7 * 24 * 3600
    mqtt_max_payload_bytes: int = Field(default=256 * 1024, ge=1)  # larger: a dead letter, never decoded
    mqtt_workers: int = Field(default=1, ge=1, le=64)  # ingest processes on this host (shared group)
    worker_nice: int = Field(default=10, ge=0, le=19)  # ingest workers yield the CPU to the alarm path
    alarm_lane: bool = True  # life-safety devices on an MQTT session of their own (gateway/alarm_lane.py)

    # Telemetry.
    telemetry_sink: Literal["influx", "sqlite"] = "influx"
    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = "anxin"
    influx_username: str | None = None
    influx_password: str | None = None
    influx_retention_policy: str | None = None
    spool_dir: Path = Path("var/spool")
    sqlite_telemetry_path: Path = Path("var/telemetry.db")
    batch_size: int = Field(default=5000, ge=1)
    flush_interval_s: float = Field(default=0.5, gt=0)
    duplicate_window_s: float = Field(default=2.0, ge=0)  # skip byte-identical repeats (never alarms)

    # Alerting.
    alerting_enabled: bool = True
    alerting_routes: Path = DEFAULT_ROUTES
    # Signs acknowledge links (>= 32 characters, random). Rotation: put the old one in the previous list.
    alerting_secret: str = ""
    alerting_secrets_previous: Annotated[list[str], NoDecode] = Field(default_factory=list)  # still verify
    ack_link_ttl_s: int = Field(default=24 * 3600, ge=60)  # how long an acknowledge link works
    # Who holds an escalation claim or the rules' lease when several gateways share a database: unique
    # per instance. Empty: the MQTT client id, which must be unique per instance anyway.
    alerting_instance_id: str = ""
    alerting_tick_s: float = Field(default=0.2, gt=0)
    alerting_delivery_attempts: int = Field(default=3, ge=1)
    alerting_retry_backoff_s: float = Field(default=0.5, ge=0)
    alerting_contact_rate_per_hour: int = Field(default=20, ge=1)  # non-life-safety messages per contact
    life_safety_retry_s: float = Field(default=5.0, gt=0)  # an unreached panic/smoke/gas contact is retried this often
    alerting_routine_retry_s: float = Field(default=30.0, gt=0)  # other alarms: this, doubling, up to 10 min
    alerting_claim_lease_s: float = Field(default=15.0, gt=0)  # a dead sender's step is taken over after this
    thresholds: Path = DEFAULT_THRESHOLDS  # threshold rules on readings (CO2, HCHO, PM2.5, fridge)
    thresholds_interval_s: float = Field(default=30.0, gt=0)
    offline_factor: float = Field(default=2.5, gt=1)  # offline after this many silent heartbeat intervals
    public_url: str = "http://127.0.0.1:8080"  # base of acknowledge links in messages
    smtp_host: str | None = None  # email channel, when set
    smtp_port: int = 25
    smtp_sender: str = "anxin@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    # SMS and voice calls to contacts' phones (alerting/channels/sms_*.py): "" (off), aliyun or tencent.
    sms_provider: Literal["", "aliyun", "tencent"] = ""
    sms_key_id: str = ""  # AccessKeyId (Aliyun) / SecretId (Tencent)
    sms_key_secret: str = ""
    sms_sign_name: str = ""  # the approved SMS signature (签名)
    sms_template: str = ""  # SMS template code/id; variables type, institution, room, incident
    voice_template: str = ""  # TTS voice template; same variables ("" = no voice calls)
    sms_app_id: str = ""  # Tencent SmsSdkAppId
    voice_app_id: str = ""  # Tencent VoiceSdkAppid
    voice_show_number: str = ""  # Aliyun CalledShowNumber ("" = the public number pool)
    sms_region: str = "ap-guangzhou"  # Tencent region
    sms_endpoint: str = ""  # override the provider's endpoint (a proxy, or a test receiver)
    voice_endpoint: str = ""
    voice_severities: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["critical"])  # who gets called

    # HTTP (platform pushes, /metrics, /healthz).
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    http_max_body_bytes: int = Field(default=256 * 1024, ge=1)  # larger request bodies: 413
    ingest_tokens: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Machine operators with full scope (name:token pairs; the name is the actor in timelines). Optional:
    # people log in as users, machines use a user's API key (`anxin user key`).
    api_tokens: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    demo_inbox: bool = False  # `anxin demo`: the demo's receivers are webhooks into /demo/inbox

    @model_validator(mode="after")
    def _instance_id(self) -> Settings:
        if not self.alerting_instance_id:
            self.alerting_instance_id = self.mqtt_client_id
        return self

    @field_validator("ingest_tokens", "voice_severities", "alerting_secrets_previous", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        # Comma-separated in the environment: ANXIN_INGEST_TOKENS=token1,token2
        return [t.strip() for t in v.split(",") if t.strip()] if isinstance(v, str) else v

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _pairs(cls, v: object) -> object:
        # ANXIN_API_TOKENS=张工:token1,值班室:token2
        if not isinstance(v, str):
            return v
        pairs = [p.strip() for p in v.split(",") if p.strip()]
        if any(":" not in p for p in pairs):
            raise ValueError("ANXIN_API_TOKENS takes name:token pairs separated by commas")
        return dict(p.split(":", 1) for p in pairs)


MIN_SECRET_CHARS = 32
MIN_TOKEN_CHARS = 16
_WEAK_SECRETS = frozenset({"", "change-me", "changeme", "secret", "demo"})


def check_secrets(settings: Settings) -> str | None:
    """Why the gateway must not start with these secrets, or None. Outside the demo there are no
    usable defaults: a guessable acknowledge-link secret lets anyone forge the link that stops a
    police escalation. People log in as users (``anxin user add``); operator tokens are optional."""
    secrets = [("ANXIN_ALERTING_SECRET", settings.alerting_secret)]
    secrets += [("ANXIN_ALERTING_SECRETS_PREVIOUS", s) for s in settings.alerting_secrets_previous]
    if settings.alerting_enabled:
        for name, value in secrets:
            if value.strip().lower() in _WEAK_SECRETS:
                return (f"{name} is not set (or is a placeholder): set a random value of at least "
                        f"{MIN_SECRET_CHARS} characters, e.g. `openssl rand -base64 33` / "
                        f"{name} 未设置：请设置至少 {MIN_SECRET_CHARS} 个字符的随机值")
            if len(value) < MIN_SECRET_CHARS:
                return (f"{name} is too short ({len(value)} characters): at least {MIN_SECRET_CHARS} random "
                        f"characters / {name} 太短：至少 {MIN_SECRET_CHARS} 个随机字符")
    short = [name for name, token in settings.api_tokens.items() if len(token) < MIN_TOKEN_CHARS]
    if short:
        return (f"ANXIN_API_TOKENS: the token of {', '.join(short)} is shorter than {MIN_TOKEN_CHARS} characters "
                f"/ 令牌太短")
    return None

