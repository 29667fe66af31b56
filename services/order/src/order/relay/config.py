from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from shopkit.settings import ServiceSettings

LOCAL_PLATFORM_SECRET = "local-dev-platform-secret"


class RelaySettings(ServiceSettings):
    """`ORDER_RELAY_*`; the platform's address and secret are shared names without prefix."""

    model_config = SettingsConfigDict(env_prefix="ORDER_RELAY_")

    service_name: str = "order-relay"
    database_url: str = Field(
        default="postgresql+asyncpg://shop:shop@localhost:5432/shop_order",
        description="Where the relay keeps relay_deliveries (its own table; the order DB by default).",
    )
    http_port: int = Field(default=8006, description="/healthz, /readyz and /metrics.")
    run_workers: bool = Field(
        default=False, description="No outbox relay or saga consumers in this process."
    )
    run_migrations: bool = False

    data_platform_url: str = Field(
        default="http://localhost:8090",
        validation_alias=AliasChoices("DATA_PLATFORM_URL", "data_platform_url"),
    )
    data_platform_secret: str = Field(
        default=LOCAL_PLATFORM_SECRET,
        validation_alias=AliasChoices("DATA_PLATFORM_SECRET", "data_platform_secret"),
        description="HMAC key of the deliveries' X-Signature: at least 32 bytes outside local mode.",
    )
    consumer_group: str = "order.dataplatform-relay"
    consumer_fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        description="Kept short here: partitions the relay resumes (the platform is back) are "
        "fetched from the next fetch on, at most this much later.",
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        description="Attempts at an order the platform refuses itself (a 4xx other than 401, "
        "403, 408, 425, 429) before it is parked in the dead-letter topic. Any other failure "
        "is retried for as long as it lasts.",
    )
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(
        default=30.0, gt=0, description="Longest pause between attempts while the platform fails."
    )
    backoff_jitter_s: float = Field(default=0.5, ge=0, description="Random extra wait, 0..this.")
    request_timeout_s: float = Field(default=5.0, gt=0, description="Per attempt.")
    deliveries_retention_days: int = Field(
        default=30, ge=1, description="How long delivered event ids are remembered."
    )

    def local_default_secrets(self) -> dict[str, tuple[str, str]]:
        return super().local_default_secrets() | {
            "data_platform_secret": ("DATA_PLATFORM_SECRET", LOCAL_PLATFORM_SECRET)
        }
