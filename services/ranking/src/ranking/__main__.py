"""`python -m ranking`: the ranking service's HTTP processes (see shopkit.http.app.serve)."""

from ranking.config import Settings
from shopkit.http.app import serve

serve("ranking.main:create_app", Settings())
