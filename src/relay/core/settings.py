"""Every setting of the relay, read from `RELAY_*` environment variables or a `.env` file.

`.env.example` documents each one; a test keeps the two in step.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Time a worker has, beyond the attempt's bounded waits, before its lease ends.
LEASE_MARGIN_SECONDS = 1.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RELAY_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    env: Literal["development", "production"] = Field(
        "development",
        description="Deployment environment; production tightens defaults.",
    )
    database_url: str | None = Field(
        None,
        description=(
            "PostgreSQL URL (postgresql://user:pass@host:5432/db). Unset: the relay starts an "
            "embedded PostgreSQL server with its data under RELAY_DATA_DIR."
        ),
    )
    data_dir: Path = Field(
        Path(".relay"),
        description="Where the relay keeps local state: the embedded database, the generated "
        "admin token.",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token for the admin API. Unset: generated on first start and kept "
        "in RELAY_DATA_DIR/admin-token.",
    )
    host: str = Field("127.0.0.1", description="Interface `relay serve` binds to.")
    port: int = Field(8080, ge=1, le=65535, description="Port `relay serve` listens on.")
    workers: int = Field(
        1,
        ge=1,
        description="API processes `relay serve` runs on its one port, to use more than one "
        "core (`relay serve --workers N` overrides it). Each one has its own database pool, "
        "connection limits and, unless --no-dispatcher, dispatcher.",
    )
    public_url: str | None = Field(
        None,
        description="Base URL vendors reach the relay at, used in messages and examples. Unset: "
        "http://HOST:PORT.",
    )
    url: str | None = Field(
        None,
        description="Where the `relay` CLI reaches the relay's API (--url overrides it). Unset: "
        "RELAY_PUBLIC_URL, else http://HOST:PORT.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level of log lines written."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="auto: JSON lines when stdout is not a terminal, readable lines when it is.",
    )
    db_pool_size: int = Field(20, ge=1, description="Database connections kept open per process.")
    db_max_overflow: int = Field(
        0,
        ge=0,
        description="Extra database connections allowed under bursts, per process. Each is "
        "opened for the burst and closed after it; under steady load above the pool size that "
        "churn costs more than waiting a moment for a pooled connection (ingest: 970 -> 540 "
        "webhooks/s with 10 extra), so the default is none.",
    )
    db_connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for a database connection before answering 503."
    )
    max_body_bytes: int = Field(
        5 * 1024 * 1024,
        ge=1024,
        description="Largest webhook body accepted; larger ones get 413 while still streaming.",
    )
    max_json_depth: int = Field(
        64,
        ge=4,
        le=200,
        description="Deepest JSON nesting accepted in a webhook body (at most 200: the stored "
        "envelope wraps the body in a few more levels, and the JSON encoder stops at 254).",
    )
    request_head_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a client has to send a request's line and headers before `relay "
        "serve` closes the connection (slow-loris clients).",
    )
    request_body_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a client has to send a request's whole body, on every route; slower "
        "ones get 408 and the connection closes.",
    )
    max_header_count: int = Field(
        100,
        ge=10,
        description="Most headers one request may carry; more get 431 and the connection closes.",
    )
    max_header_bytes: int = Field(
        32 * 1024,
        ge=4096,
        description="Largest request line plus headers, in bytes; larger get 431 and the "
        "connection closes.",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Open connections one `relay serve` process accepts at once; beyond it, new "
        "requests get 503 with Retry-After.",
    )
    max_connections_per_client: int = Field(
        100,
        ge=1,
        description="Open connections one client address (an IPv6 client: its /64) may hold at "
        "once in one `relay serve` process; further ones are closed as they open, so one "
        "client cannot take all of RELAY_MAX_CONNECTIONS.",
    )
    client_connection_limits: Annotated[dict[IPvAnyNetwork, int], NoDecode] = Field(
        default_factory=dict,
        description="Per-address limits replacing RELAY_MAX_CONNECTIONS_PER_CLIENT for addresses "
        "in these networks, comma-separated NETWORK=LIMIT (e.g. 10.0.0.5/32=1000 for the "
        "relay's own load balancer, 198.51.100.0/24=400 for a vendor's egress proxy); the most "
        "specific network wins.",
    )
    oauth_token_ttl: timedelta = Field(
        timedelta(hours=1),
        description="Default lifetime of bearer tokens issued by /ingest/{slug}/oauth/token.",
    )
    delivery_timeout: float = Field(
        15.0, gt=0, description="Seconds a subscriber has to answer one delivery attempt."
    )
    secret_rotation_overlap: timedelta = Field(
        timedelta(hours=24),
        description="After a subscription's secret is rotated, how long deliveries are also "
        "signed with the old secret.",
    )
    breaker_failures: int = Field(
        20,
        ge=1,
        description="Consecutive failed attempts after which a subscription's circuit breaker "
        "opens (deliveries held back, probed once a minute).",
    )
    breaker_probe_interval: timedelta = Field(
        timedelta(minutes=1),
        description="How often a subscription with an open breaker is probed.",
    )
    disable_after: timedelta = Field(
        timedelta(days=5),
        description="A subscription failing this long with no success is disabled.",
    )
    dispatcher_batch_size: int = Field(
        100, ge=1, le=5000, description="Deliveries claimed per claim query."
    )
    dispatcher_concurrency: int = Field(
        100, ge=1, description="Delivery requests in flight per worker process, all subscribers."
    )
    dispatcher_poll_interval: float = Field(
        1.0,
        gt=0,
        description="Seconds between claim queries when no NOTIFY wakes the dispatcher.",
    )
    dispatcher_lease: timedelta = Field(
        timedelta(seconds=60),
        description="How long a claimed delivery stays reserved for its worker; after that "
        "another worker may claim it. At least RELAY_DELIVERY_TIMEOUT + 2 x "
        "RELAY_DB_CONNECT_TIMEOUT + 1 s.",
    )
    shutdown_grace: float = Field(
        10.0,
        ge=0,
        description="Seconds to let in-flight deliveries finish on SIGTERM before releasing them.",
    )
    job_batch_size: int = Field(
        500,
        ge=1,
        le=10_000,
        description="Rows a recover or replay job handles per transaction.",
    )
    job_max_backlog: int = Field(
        1000,
        ge=1,
        description="A recover or replay job waits while this many of the deliveries it feeds "
        "are already due and unsent, so live traffic never queues behind a whole backlog.",
    )
    job_lease: timedelta = Field(
        timedelta(seconds=60),
        description="How long a running job stays reserved for its worker without progress; "
        "after that another worker resumes it from its last batch.",
    )
    job_poll_interval: float = Field(
        2.0, gt=0, description="Seconds between looks for queued recover and replay jobs."
    )
    retention_days: int = Field(
        30,
        ge=1,
        description="Events (with their deliveries and attempts) and inbound request logs older "
        "than this are purged.",
    )
    attempt_body_retention_days: int | None = Field(
        None,
        ge=1,
        description="Subscriber response bodies kept in the attempt log are cleared after this "
        "many days. Unset: RELAY_RETENTION_DAYS.",
    )
    dedupe_retention_days: int | None = Field(
        None,
        ge=1,
        description="Dedupe keys are kept this long, so a vendor's late retry is still a "
        "duplicate after its event was purged. Unset: RELAY_RETENTION_DAYS.",
    )
    retention_interval: timedelta = Field(
        timedelta(hours=1),
        description="How often each dispatcher process runs the retention purge.",
    )
    retention_batch_size: int = Field(
        1000, ge=1, le=100_000, description="Rows deleted per statement by the retention purge."
    )
    metrics_public: bool = Field(
        False,
        description="Serve GET /metrics without the admin token (for a scraper on a private "
        "network).",
    )

    console_enabled: bool = Field(
        True, description="Serve the web console under /console from `relay serve`."
    )
    console_session_ttl: timedelta = Field(
        timedelta(hours=8),
        description="How long a console sign-in lasts before the token is asked for again.",
    )

    encryption_key: SecretStr | None = Field(
        None,
        description="Fernet keys that encrypt source credentials and subscription secrets in "
        "the database, comma-separated, newest first: the first encrypts, all decrypt. Unset: "
        "generated once into RELAY_DATA_DIR/encryption-key; required when RELAY_ENV=production.",
    )
    allowed_destination_networks: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CIDR networks subscriber URLs may reach although they are "
        "not public (e.g. 127.0.0.0/8 for local development). Empty: public addresses only.",
    )
    allow_http_destinations: bool = Field(
        False,
        description="In production, also allow http:// subscriber URLs (only https:// otherwise; "
        "development always allows both).",
    )

    def relay_url(self, *, host: str | None = None, port: int | None = None) -> str:
        """Where this relay is reached: RELAY_URL, else RELAY_PUBLIC_URL, else
        http://RELAY_HOST:RELAY_PORT; `relay serve` and the CLI both ask here."""
        if self.url or self.public_url:
            return (self.url or self.public_url or "").rstrip("/")
        bound = host or self.host
        # A relay bound to every interface is reached on this machine through loopback.
        reach = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(bound, bound)
        if ":" in reach and not reach.startswith("["):
            reach = f"[{reach}]"
        return f"http://{reach}:{port or self.port}"

    @field_validator("allowed_destination_networks", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("client_connection_limits", mode="before")
    @classmethod
    def _network_limits(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        limits: dict[str, str] = {}
        for part in (part.strip() for part in value.split(",")):
            if not part:
                continue
            network, equals, limit = part.partition("=")
            if not equals:
                raise ValueError(
                    f"'{part}' is not NETWORK=LIMIT: write e.g. 10.0.0.5/32=1000, comma-separated"
                )
            limits[network.strip()] = limit.strip()
        return limits

    @field_validator("client_connection_limits")
    @classmethod
    def _positive_limits(cls, value: dict[IPvAnyNetwork, int]) -> dict[IPvAnyNetwork, int]:
        for network, limit in value.items():
            if limit < 1:
                raise ValueError(f"the limit for {network} must be at least 1, not {limit}")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
            raise ValueError(
                "RELAY_DATABASE_URL must be a PostgreSQL URL such as "
                "postgresql://user:password@host:5432/relay"
            )
        return value

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> Settings:
        # A lease that ends while its attempt is still under way lets another worker claim the
        # delivery and send it a second time. An attempt is the request itself plus, at worst,
        # a wait for a database connection before it and another for the write after it.
        shortest = self.delivery_timeout + 2 * self.db_connect_timeout + LEASE_MARGIN_SECONDS
        if self.dispatcher_lease.total_seconds() < shortest:
            raise ValueError(
                f"RELAY_DISPATCHER_LEASE ({self.dispatcher_lease.total_seconds():g} s) must be "
                "at least RELAY_DELIVERY_TIMEOUT + 2 x RELAY_DB_CONNECT_TIMEOUT + "
                f"{LEASE_MARGIN_SECONDS:g} s ({shortest:g} s), so a delivery is not claimed "
                "again while its attempt is still under way"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
