"""`python -m order.relay`: the data-platform relay's process (see order.relay.main)."""

from order.relay.config import RelaySettings
from order.relay.main import create_app
from shopkit.http.app import serve

serve(create_app, RelaySettings())
