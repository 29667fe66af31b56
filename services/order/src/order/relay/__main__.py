"""`python -m order.relay`: the data-platform relay's process (see order.relay.main)."""

from order.relay.config import RelaySettings
from shopkit.http.app import serve

serve("order.relay.main:create_app", RelaySettings())
