"""Settings shared by every service. Each service subclasses `ServiceSettings` with its own
env prefix (`POINT_`, `ORDER_`, …); cluster-wide settings (Kafka, JWT) are read without prefix."""

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_JWT_SECRET = "local-dev-secret"
MIN_SECRET_BYTES = 32


class InsecureSettings(ValueError):
    """Outside local mode, a secret anyone can know (the public local default) or guess (too
    short), or user confinement turned off: the process refuses to start rather than let anyone
    forge a token or act as any user."""


class ServiceSettings(BaseSettings):
    # A service's class sets only its `env_prefix`: pydantic merges the rest in from here.
    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    service_name: str = "service"
    database_url: str = "postgresql+asyncpg://shop:shop@localhost:5432/shop"
    db_pool_size: int = Field(
        default=16,
        ge=1,
        description="Connections for HTTP requests per process, opened as needed and then kept: "
        "sized for the concurrency the process serves, so steady load opens none.",
    )
    db_worker_pool_size: int = Field(
        default=6,
        ge=1,
        description="Connections of the background workers (consumers, outbox relay, "
        "sweepers): a pool of their own, so HTTP load never queues the saga.",
    )
    db_fill_pools: bool = Field(
        default=True,
        description="Open the pools' connections at start (the HTTP pool in every process, the "
        "workers' pool where they run): load then opens none.",
    )
    db_max_overflow: int = Field(
        default=0,
        ge=0,
        description="Extra short-lived connections past db_pool_size (each a new PostgreSQL "
        "backend and authentication): off, a request waits for a pooled connection instead.",
    )
    db_pool_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="How long a request waits for a pooled connection before it is answered "
        "503 SERVICE_UNAVAILABLE with Retry-After (a saturated service sheds load instead of "
        "piling it up; a burst of a few seconds' work is still served).",
    )
    db_ssl: str = Field(
        default="auto",
        pattern="^(auto|disable|prefer|require|verify-ca|verify-full)$",
        description="TLS to PostgreSQL (libpq sslmode names). auto: disable on loopback "
        "(nothing to protect, no negotiation per connection), prefer elsewhere.",
    )
    db_statement_timeout_ms: int = 10_000
    db_pool_pre_ping: bool = Field(
        default=False,
        description="Ping each connection on checkout (3 extra round trips with asyncpg). Off: "
        "a connection the server closed (a restart) is replaced at checkout without a round "
        "trip (shopkit.database.engine), connections are recycled every db_pool_recycle_s, and "
        "work that failed for a lost connection is retried (consumers) or answered 503.",
    )
    db_pool_recycle_s: int = 1_800

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    http_workers: int = Field(
        default=1,
        ge=1,
        description="Processes serving the port. One of them runs the workers (consumers, "
        "outbox relay, sweepers: see shopkit.ops.roles), the others only answer HTTP. One Python "
        "process uses one core: more help the HTTP paths on a machine with more.",
    )
    run_workers: bool = Field(
        default=True, description="Run the outbox relay and consumers inside the API process."
    )
    run_migrations: bool = Field(default=True, description="Apply migrations at start-up.")

    kafka_bootstrap_servers: str = Field(
        default="localhost:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    kafka_topic_prefix: str = Field(default="", validation_alias="KAFKA_TOPIC_PREFIX")
    kafka_topic_partitions: int = Field(default=8, validation_alias="KAFKA_TOPIC_PARTITIONS")
    kafka_replication_factor: int = Field(default=1, validation_alias="KAFKA_REPLICATION_FACTOR")
    kafka_linger_ms: int = Field(
        default=2,
        ge=0,
        description="How long the producer waits to fill a batch (the relay sends whole "
        "batches at once, so a short wait is enough).",
    )

    outbox_batch_size: int = 500
    outbox_linger_ms: float = Field(
        default=60,
        ge=0,
        description="Under load, the relay publishes at most once per this many ms, so one "
        "round of SQL and one produce request carry the events of several commits (a lone "
        "event, after a quiet spell, goes at once). Measured (make bench, orders): 10 ms held "
        "75 orders/s within p99 1 s, 40 ms 85/s, 60 ms 95/s, 100 ms less (the waits add up).",
    )
    outbox_poll_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="The relay wakes on every commit that staged events (LISTEN/NOTIFY); this "
        "is only its fallback check while idle.",
    )
    consumer_max_retries: int = Field(
        default=3,
        ge=0,
        description="Retries of an event whose handler fails by itself (then it is "
        "dead-lettered). A transient failure (shopkit.ops.faults) is retried while it lasts.",
    )
    consumer_retry_backoff_s: float = 0.2
    consumer_transient_backoff_max_s: float = Field(
        default=5.0,
        gt=0,
        description="Longest wait between retries of an event while the infrastructure fails.",
    )
    consumer_transient_patience_s: float = Field(
        default=60.0,
        gt=0,
        description="After this long retrying one event in place, the consumer restarts from "
        "its committed offsets (rejoining its group) and goes on retrying: never dead-letters.",
    )
    consumer_timeout_patience_s: float = Field(
        default=300.0,
        gt=0,
        description="An event whose handler timed out on every attempt (statement or lock "
        "timeout) for this long while the database answered is dead-lettered with its reason, "
        "so it holds its partition no longer. A database that fails is waited out "
        "(shopkit.messaging.retry).",
    )
    consumer_batch_size: int = Field(
        default=500,
        ge=1,
        description="Most messages handled in one transaction (a poll's batch; one event per "
        "transaction when a batch fails).",
    )
    consumer_linger_ms: float = Field(
        default=60,
        ge=0,
        description="Under load, a consumer starts a transaction at most once per this many "
        "ms, so one transaction carries the events of several polls (a lone event, after a "
        "quiet spell, is handled at once). Chosen with outbox_linger_ms, by measurement.",
    )
    consumer_commit_interval_s: float = Field(
        default=0.5,
        ge=0,
        description="Offsets are committed to Kafka (always after the database commit) at most "
        "this often under load; 0 commits after every batch.",
    )
    consumer_fetch_max_wait_ms: int = Field(
        default=2_000,
        ge=1,
        description="How long a fetch waits at the broker when there is nothing to read (a "
        "message that arrives meanwhile is answered at once): idle, each consumer fetches once "
        "per wait. 500 ms cost an idle service ~0.35 % of a core more than 2 s.",
    )
    consumer_fetch_min_bytes: int = Field(
        default=1,
        ge=1,
        description="A fetch returns once this much is there (or after the max wait): more "
        "means fewer, fuller fetches under load and a fetch per max wait while idle.",
    )

    local_mode: bool = Field(
        default=False,
        validation_alias="SHOP_LOCAL_MODE",
        description="A local run (set by the local scripts, never by compose or Kubernetes): "
        "the public local default secrets are accepted.",
    )
    jwt_secret: str = Field(
        default=LOCAL_JWT_SECRET,
        validation_alias="JWT_SECRET",
        description="HS256 key of bearer tokens: at least 32 bytes outside local mode.",
    )
    jwt_issuer: str | None = Field(
        default=None, validation_alias="JWT_ISSUER", description="When set, `iss` must be it."
    )
    jwt_audience: str | None = Field(
        default=None,
        validation_alias="JWT_AUDIENCE",
        description="When set, `aud` must name it.",
    )
    jwt_max_lifetime_s: int = Field(
        default=86_400,
        ge=1,
        validation_alias="JWT_MAX_LIFETIME_S",
        description="A token living longer than this (exp - iat, or exp - now) is refused.",
    )
    auth_enforce_users: bool = Field(
        default=True,
        validation_alias="AUTH_ENFORCE_USERS",
        description="User endpoints need a token of that user (or an admin). Off only for "
        "local experiments.",
    )

    kafka_topic_retention_days: int = Field(
        default=7,
        ge=1,
        validation_alias="KAFKA_TOPIC_RETENTION_DAYS",
        description="How long the topics keep messages (`retention.ms` of the topics the "
        "services create, event and dead-letter topics alike; the brokers' default is the same "
        "7 days). The claims in processed_events must outlive every replay that retention allows.",
    )
    processed_events_retention_days: int = Field(
        default=15,
        ge=1,
        description="Processed-event rows (claims) older than this are deleted: longer than any "
        "copy of the event can come back (`replay_horizon_days`, checked at start-up).",
    )
    idempotency_keys_retention_days: int = Field(
        default=7, ge=1, description="Idempotency-Key answers are replayed for this long."
    )
    outbox_retention_days: int = Field(
        default=1, ge=1, description="Published outbox rows are kept this long (never unsent ones)."
    )
    retention_interval_s: float = Field(
        default=3_600, gt=0, description="How often those rows are pruned."
    )
    retention_batch: int = Field(default=5_000, ge=1, description="Rows deleted per transaction.")

    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_json: bool = Field(default=True, validation_alias="LOG_JSON")
    shutdown_timeout_s: float = 10.0
    liveness_max_loop_lag_s: float = Field(
        default=10.0,
        gt=0,
        description="/healthz fails when the event loop ran a timer this much late.",
    )

    def local_default_secrets(self) -> dict[str, tuple[str, str]]:
        """field name -> (its environment variable, its public local default). A service with
        more secrets extends this."""
        return {"jwt_secret": ("JWT_SECRET", LOCAL_JWT_SECRET)}

    @property
    def replay_horizon_days(self) -> int:
        """How long after it was first handled an event can still arrive: a consumer reads it
        (and may dead-letter it) up to a topic retention after it was published, and its dead
        letter can be replayed up to a dead-letter topic retention after that."""
        return 2 * self.kafka_topic_retention_days

    @model_validator(mode="after")
    def _claims_outlive_replays(self) -> Self:
        if self.processed_events_retention_days <= self.replay_horizon_days:
            raise ValueError(
                f"processed_events_retention_days ({self.processed_events_retention_days}) must "
                f"exceed the replay horizon ({self.replay_horizon_days} days: twice "
                "kafka_topic_retention_days), or a replayed dead letter is handled twice"
            )
        return self

    @model_validator(mode="after")
    def _refuse_forgeable_secrets(self) -> Self:
        if self.local_mode:
            return self
        if not self.auth_enforce_users:
            raise InsecureSettings(
                "AUTH_ENFORCE_USERS=false lets anyone act as any user: it is for local "
                "experiments only (SHOP_LOCAL_MODE=true)"
            )
        for field, (variable, local_default) in self.local_default_secrets().items():
            value: str = getattr(self, field)
            if value == local_default:
                raise InsecureSettings(
                    f"{variable} is the public local default: set a secret of at least "
                    f"{MIN_SECRET_BYTES} bytes (or SHOP_LOCAL_MODE=true for a local run)"
                )
            if len(value.encode()) < MIN_SECRET_BYTES:
                raise InsecureSettings(
                    f"{variable} is shorter than {MIN_SECRET_BYTES} bytes: set a longer one "
                    f"(or SHOP_LOCAL_MODE=true for a local run)"
                )
        return self

    def topic(self, name: str) -> str:
        """The physical topic for a logical one (a prefix isolates environments and test runs)."""
        return f"{self.kafka_topic_prefix}{name}"
