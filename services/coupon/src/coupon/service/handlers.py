"""Which event runs which saga step: the coupon service's consumer, in one place.

One consumer group for both steps (one fetch loop, one transaction per batch): pricing comes
on the stock topic, the coupon's return on the order topic; they meet on the order's pricing
row whichever comes first."""

from coupon.service.pricing import price_order, restore_coupon
from shop_contracts import OrderFailed, StockReserved, topics
from shopkit.ops.runtime import ConsumerSpec

CONSUMERS = [
    ConsumerSpec(
        group_id="coupon.saga",
        topics=[topics.STOCK_EVENTS, topics.ORDER_EVENTS],
        handlers={StockReserved: price_order, OrderFailed: restore_coupon},
    ),
]
