"""`python -m order`: the order service's HTTP processes (see shopkit.http.app.serve)."""

from order.config import Settings
from shopkit.http.app import serve

serve("order.main:create_app", Settings())
