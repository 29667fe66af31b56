"""`python -m product`: the product service's HTTP processes (see shopkit.http.app.serve)."""

from product.config import Settings
from product.main import create_app
from shopkit.http.app import serve

serve(create_app, Settings())
