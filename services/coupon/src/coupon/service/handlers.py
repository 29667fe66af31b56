"""Which event runs which saga step: the coupon service's consumers, in one place."""

from coupon.service.pricing import price_order, restore_coupon
from shop_contracts import OrderFailed, StockReserved, topics
from shopkit.runtime import ConsumerSpec

CONSUMERS = [
    ConsumerSpec(
        group_id="coupon.pricing",
        topics=[topics.STOCK_EVENTS],
        handlers={StockReserved: price_order},
    ),
    ConsumerSpec(
        group_id="coupon.compensation",
        topics=[topics.ORDER_EVENTS],
        handlers={OrderFailed: restore_coupon},
    ),
]
