"""`python -m coupon`: the coupon service's HTTP processes (see shopkit.http.app.serve)."""

from coupon.config import Settings
from coupon.main import create_app
from shopkit.http.app import serve

serve(create_app, Settings())
