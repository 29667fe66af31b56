"""`python -m coupon`: the coupon service's HTTP processes (see shopkit.http.app.serve)."""

from coupon.config import Settings
from shopkit.http.app import serve

serve("coupon.main:create_app", Settings())
