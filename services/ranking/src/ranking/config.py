import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from shopkit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RANKING_")

    service_name: str = "ranking"
    database_url: str = "postgresql+asyncpg://shop:shop@localhost:5432/shop_ranking"
    http_port: int = 8005
    run_workers: bool = Field(
        default=False,
        description="The API process has no outbox and no consumers: the Faust worker "
        "(`python -m ranking.workers`) does the consuming.",
    )

    business_timezone: str = Field(
        default="Asia/Seoul", description="Days (windows, 'the last 3 days') start at its midnight."
    )
    window_days: int = Field(default=3, ge=1, description="Completed days the ranking covers.")
    top_n: int = Field(default=5, ge=1)
    retention_days: int = Field(
        default=7, ge=2, description="Days of sales kept (Faust windows, changelog, mirror)."
    )
    dedupe_hours: int = Field(
        default=6,
        ge=1,
        description="Hours an OrderPaid's event id is remembered to ignore a copy published "
        "again at another offset (a redelivery at the same offset is caught by the tallies).",
    )
    snapshot_cron: str = Field(
        default="1 0 * * *", description="When the daily snapshot runs, in the business timezone."
    )

    stream_app_id: str = Field(default="ranking", description="Faust app id (after the prefix).")
    stream_data_dir: str = Field(
        default=str(Path(tempfile.gettempdir()) / "shop-ranking"),
        description="Faust's working directory (tables are in memory; it keeps only a lock "
        "there): never the current directory.",
    )
    stream_mirror_interval_s: float = Field(
        default=1.0, gt=0, description="How often table changes are written to daily_sales."
    )
    stream_cleanup_interval_s: float = Field(
        default=600.0, gt=0, description="How often windows past retention are dropped."
    )
    stream_commit_interval_s: float = Field(default=2.8, gt=0)
    stream_session_timeout_s: float = Field(
        default=10.0, ge=6, description="A killed worker's partitions move after this long."
    )

    @field_validator("business_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone
        return value

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.business_timezone)
