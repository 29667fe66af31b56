"""Which event runs which saga step: the point service's consumer, in one place.

One consumer group for both steps (one fetch loop, one transaction per batch): payments come
on the coupon topic, refunds on the order topic; an order's payment and refund meet on its
payment row whichever comes first."""

from point.service.payments import pay_order, refund_order
from shop_contracts import OrderFailed, OrderPriced, topics
from shopkit.ops.runtime import ConsumerSpec

CONSUMERS = [
    ConsumerSpec(
        group_id="point.saga",
        topics=[topics.COUPON_EVENTS, topics.ORDER_EVENTS],
        handlers={OrderPriced: pay_order, OrderFailed: refund_order},
    ),
]
