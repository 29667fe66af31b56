"""`python -m point`: the point service's HTTP processes (see shopkit.http.app.serve)."""

from point.config import Settings
from point.main import create_app
from shopkit.http.app import serve

serve(create_app, Settings())
