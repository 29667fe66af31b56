"""Which event runs which saga step: the order service's consumers, in one place."""

from order.service.saga import (
    on_coupon_rejected,
    on_order_priced,
    on_payment_completed,
    on_payment_failed,
    on_stock_rejected,
    on_stock_reserved,
)
from shop_contracts import (
    CouponRejected,
    OrderPriced,
    PaymentCompleted,
    PaymentFailed,
    StockRejected,
    StockReserved,
    topics,
)
from shopkit.ops.runtime import ConsumerSpec

CONSUMERS = [
    ConsumerSpec(
        group_id="order.saga",
        topics=[topics.STOCK_EVENTS, topics.COUPON_EVENTS, topics.PAYMENT_EVENTS],
        handlers={
            StockReserved: on_stock_reserved,
            StockRejected: on_stock_rejected,
            OrderPriced: on_order_priced,
            CouponRejected: on_coupon_rejected,
            PaymentCompleted: on_payment_completed,
            PaymentFailed: on_payment_failed,
        },
    ),
]
