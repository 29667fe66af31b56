"""Which event runs which saga step: the point service's consumers, in one place."""

from point.service.payments import pay_order, refund_order
from shop_contracts import OrderFailed, OrderPriced, topics
from shopkit.runtime import ConsumerSpec

CONSUMERS = [
    ConsumerSpec(
        group_id="point.payments", topics=[topics.COUPON_EVENTS], handlers={OrderPriced: pay_order}
    ),
    ConsumerSpec(
        group_id="point.refunds", topics=[topics.ORDER_EVENTS], handlers={OrderFailed: refund_order}
    ),
]
