-- POST /orders, one line, no coupon. Paced (rate=…): no Prefer header, answered 202 at once.
-- Closed loop (no rate, orders-wait): wrk sends `Prefer: wait=30` (-H), answered 201 once the
-- order is PAID or FAILED, and the connection then places its next order.
-- Arguments: product=<id> quantity=<units per order>
function build(user)
   return wrk.format(
      "POST",
      "/orders",
      nil,
      '{"user_id":' .. id(user) .. ',"items":[{"product_id":' .. opt.product
         .. ',"quantity":' .. opt.quantity .. '}],"user_coupon_id":null}'
   )
end
