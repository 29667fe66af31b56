"""Kafka topic names. Every event of one order is keyed by its order id, so the saga of
one order stays on one partition of each topic and is consumed in order."""

from typing import Final

ORDER_EVENTS: Final = "shop.order.events"
STOCK_EVENTS: Final = "shop.stock.events"
COUPON_EVENTS: Final = "shop.coupon.events"
PAYMENT_EVENTS: Final = "shop.payment.events"
DEAD_LETTER: Final = "shop.deadletter"

ALL_TOPICS: Final = (ORDER_EVENTS, STOCK_EVENTS, COUPON_EVENTS, PAYMENT_EVENTS, DEAD_LETTER)
