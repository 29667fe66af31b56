"""`python -m ranking`: the ranking service's HTTP processes (see shopkit.http.app.serve)."""

from ranking.config import Settings
from ranking.main import create_app
from shopkit.http.app import serve

serve(create_app, Settings())
