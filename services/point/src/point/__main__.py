"""`python -m point`: the point service's HTTP processes (see shopkit.http.app.serve)."""

from point.config import Settings
from shopkit.http.app import serve

serve("point.main:create_app", Settings())
