"""The data platform's HTTP API, as the relay sees it: one signed, idempotent POST.

aiohttp rather than httpx: a POST cost 680 µs of the relay's CPU through httpx (its client,
httpcore and anyio layers), 157 µs through aiohttp, and the relay makes one per paid order."""

from uuid import UUID

import aiohttp

from order.relay.signing import signature
from shopkit.ops import tracing

RETRIED_STATUSES = frozenset({401, 403, 408, 425, 429})
"""4xx answers that are not about the order: a timeout, too many requests, or the platform
refusing our credentials (after a secret rotation on one side): retried while they last."""


class DeliveryFailed(Exception):
    """No 2xx. `permanent` when the platform refuses this order itself (a 4xx not in
    RETRIED_STATUSES): retrying cannot help and the order is parked in the dead-letter topic.
    Otherwise (a timeout, no connection, 5xx, 408, 429, 401/403) the platform or the way to it
    fails and the delivery waits until it passes."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retriable = not permanent
        """How shopkit.ops.faults.is_transient (and so shopkit.messaging.retry) tells an outage
        from a refusal."""


class DataPlatformClient:
    def __init__(self, base_url: str, secret: str, timeout_s: float) -> None:
        self._url = f"{base_url.rstrip('/')}/orders"
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def post_order(self, idempotency_key: UUID, body: bytes) -> int:
        """POST {base}/orders; the 2xx status, else raises DeliveryFailed."""
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": str(idempotency_key),
            "X-Signature": signature(body, self._secret),
        }
        if self._session is None:  # made in the running loop, kept for its connections
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        with tracing.http_client_span("POST", self._url, headers) as span:
            try:
                async with self._session.post(self._url, data=body, headers=headers) as response:
                    status = response.status
                    if span is not None:
                        span.set_attribute("http.response.status_code", status)
                    if 200 <= status < 300:
                        return status
                    text = (await response.read())[:300].decode(errors="replace")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise DeliveryFailed(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        raise DeliveryFailed(
            f"HTTP {status}: {text}",
            permanent=400 <= status < 500 and status not in RETRIED_STATUSES,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
