-- POST <path> {"user_id": N}: coupon issue (service) and the gate/win references.
-- Argument: path=/coupons/7/issue
function build(user)
   return wrk.format("POST", opt.path, nil, '{"user_id":' .. id(user) .. "}")
end
