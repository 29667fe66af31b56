from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shopkit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COUPON_")

    service_name: str = "coupon"
    database_url: str = "postgresql+asyncpg://shop:shop@localhost:5432/shop_coupon"
    http_port: int = 8003

    gate_reconcile_interval_s: float = Field(
        default=300.0,
        gt=0,
        description="How often each open coupon's Redis gate is compared with PostgreSQL and "
        "admissions no issued copy backs are taken back.",
    )
    gate_reconcile_grace_s: float = Field(
        default=30.0,
        gt=0,
        description="An admission is repaired only if no copy backs it this long after it was "
        "first seen unbacked: longer than any issuance in flight can take.",
    )
    redis_url: str = Field(default="redis://localhost:6379/0", validation_alias="REDIS_URL")
    redis_key_prefix: str = Field(
        default="coupon",
        pattern=r"^[^{}]*$",
        description="Namespace of the gate's keys (tests isolate runs with it). No braces: "
        "the coupon id in braces is the Redis Cluster hash tag.",
    )
    redis_max_connections: int = Field(
        default=512,
        description="Pool size: every request in flight may be running a script at once.",
    )
    redis_warm_connections: int = Field(
        default=512, description="Connections opened at start-up, ready for a rush."
    )
    redis_pool_timeout_s: float = Field(
        default=5.0,
        description="How long a request waits for a free pooled connection (an unreachable "
        "Redis frees them at once: connecting fails fast).",
    )
    redis_timeout_s: float = Field(
        default=0.5,
        description="Socket connect and read timeout: an unreachable Redis is a quick 503.",
    )
