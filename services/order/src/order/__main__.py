"""`python -m order`: the order service's HTTP processes (see shopkit.http.app.serve)."""

from order.config import Settings
from order.main import create_app
from shopkit.http.app import serve

serve(create_app, Settings())
