"""Which event runs which saga step: the product service's consumers, in one place.

Reserving and releasing share one consumer group on the order topic, so an order's
`OrderCreated` and `OrderFailed` are handled in the order they were published."""

from product.service.reservations import release_stock, reserve_stock
from shop_contracts import OrderCreated, OrderFailed, topics
from shopkit.ops.runtime import ConsumerSpec

CONSUMERS = [
    ConsumerSpec(
        group_id="product.reservations",
        topics=[topics.ORDER_EVENTS],
        handlers={OrderCreated: reserve_stock, OrderFailed: release_stock},
    ),
]
