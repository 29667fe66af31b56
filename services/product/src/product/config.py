from pydantic_settings import SettingsConfigDict

from shopkit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRODUCT_")

    service_name: str = "product"
    database_url: str = "postgresql+asyncpg://shop:shop@localhost:5432/shop_product"
    http_port: int = 8002
