"""Which of a service's HTTP processes runs its workers.

With `http_workers` > 1, `shopkit.http.server.serve_processes` starts that many processes on one
port: the first runs the consumers, the outbox relay and the sweepers, and the others only answer
HTTP. The extra processes give the HTTP paths the machine's other cores without adding fetch
loops, relays and backends that the saga would pay for. A process that dies is started again
with the same part, so the workers always run in exactly one of them.
"""

from shopkit.settings import ServiceSettings

_http_only = False


def answer_http_only() -> None:
    """Called by the supervisor in a process it starts to serve HTTP only, before the app."""
    global _http_only
    _http_only = True


def runs_workers(settings: ServiceSettings) -> bool:
    """True when this process is to run the service's workers."""
    return settings.run_workers and not _http_only
