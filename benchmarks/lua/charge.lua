-- POST /points/<user>/charge {"amount": A}. Argument: amount=1000
function build(user)
   return wrk.format(
      "POST", "/points/" .. id(user) .. "/charge", nil, '{"amount":' .. opt.amount .. "}"
   )
end
