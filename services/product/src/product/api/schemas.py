from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from product.domain.catalogue import (
    MAX_NAME_LENGTH,
    MAX_PRICE,
    MAX_STOCK,
    MIN_PRICE,
    refuse_control_characters,
)
from shopkit.http.numbers import Integral
from shopkit.http.text import trimmed_text

Name = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=MAX_NAME_LENGTH),
    AfterValidator(refuse_control_characters),
    trimmed_text(MAX_NAME_LENGTH, control_characters=False),
]
Price = Annotated[int, Field(strict=True, ge=MIN_PRICE, le=MAX_PRICE), Integral]
Stock = Annotated[int, Field(strict=True, ge=0, le=MAX_STOCK), Integral]


class NewProduct(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    price: Price
    stock: Stock


class StockUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stock: Stock


class ProductResponse(BaseModel):
    id: int
    name: str
    price: int
    stock: int


class ProductList(BaseModel):
    items: list[ProductResponse]
