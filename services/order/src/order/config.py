from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shopkit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDER_")

    service_name: str = "order"
    database_url: str = "postgresql+asyncpg://shop:shop@localhost:5432/shop_order"
    http_port: int = 8004

    saga_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="An order still PENDING this long after it was placed (on the database's "
        "clock) fails with TIMEOUT. Well above a consumer's Kafka session timeout (30 s) plus its "
        "restart backoff (up to 30 s), so a crashed or restarted step does not fail orders.",
    )
    deadline_sweep_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the sweeper looks for overdue orders (an order fails by its "
        "deadline at most this much late).",
    )
    deadline_sweep_batch: int = Field(
        default=100, ge=1, description="Overdue orders failed per transaction."
    )
    max_wait_s: float = Field(
        default=30.0, ge=0, description="Upper bound of `Prefer: wait=N` on POST /orders."
    )
