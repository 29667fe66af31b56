-- POST /orders, one line, no coupon, no Prefer header (answered 202 at once).
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
