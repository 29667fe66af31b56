"""`python -m product`: the product service's HTTP processes (see shopkit.http.app.serve)."""

from product.config import Settings
from shopkit.http.app import serve

serve("product.main:create_app", Settings())
