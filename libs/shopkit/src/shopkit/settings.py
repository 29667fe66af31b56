"""Settings shared by every service. Each service subclasses `ServiceSettings` with its own
env prefix (`POINT_`, `ORDER_`, …); cluster-wide settings (Kafka, JWT) are read without prefix."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    service_name: str = "service"
    database_url: str = "postgresql+asyncpg://shop:shop@localhost:5432/shop"
    db_pool_size: int = 10
    db_max_overflow: int = 20
    db_statement_timeout_ms: int = 10_000
    db_pool_pre_ping: bool = Field(
        default=False,
        description="Ping each connection on checkout (3 extra round trips with asyncpg). Off: "
        "connections are recycled every db_pool_recycle_s and failed work is retried instead.",
    )
    db_pool_recycle_s: int = 1_800

    http_host: str = "127.0.0.1"
    http_port: int = 8000
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

    outbox_batch_size: int = 500
    outbox_poll_interval_s: float = 0.05
    consumer_max_retries: int = 3
    consumer_retry_backoff_s: float = 0.2
    consumer_batch_size: int = 500

    jwt_secret: str = Field(default="local-dev-secret", validation_alias="JWT_SECRET")
    auth_enforce_users: bool = Field(default=False, validation_alias="AUTH_ENFORCE_USERS")

    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_json: bool = Field(default=True, validation_alias="LOG_JSON")
    shutdown_timeout_s: float = 10.0

    def topic(self, name: str) -> str:
        """The physical topic for a logical one (a prefix isolates environments and test runs)."""
        return f"{self.kafka_topic_prefix}{name}"
