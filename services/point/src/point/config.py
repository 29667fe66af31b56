from pydantic_settings import SettingsConfigDict

from shopkit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="POINT_")

    service_name: str = "point"
    database_url: str = "postgresql+asyncpg://shop:shop@localhost:5432/shop_point"
    http_port: int = 8001
