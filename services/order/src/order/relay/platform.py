"""The data platform's HTTP API, as the relay sees it: one signed, idempotent POST."""

from uuid import UUID

import httpx

from order.relay.signing import signature

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


class DataPlatformClient:
    def __init__(
        self,
        base_url: str,
        secret: str,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._secret = secret
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport
        )

    async def post_order(self, idempotency_key: UUID, body: bytes) -> int:
        """POST {base}/orders; the 2xx status, else raises DeliveryFailed."""
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": str(idempotency_key),
            "X-Signature": signature(body, self._secret),
        }
        try:
            response = await self._http.post("/orders", content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if not response.is_success:
            status = response.status_code
            raise DeliveryFailed(
                f"HTTP {status}: {response.text[:300]}",
                permanent=400 <= status < 500 and status not in RETRIED_STATUSES,
            )
        return response.status_code

    async def aclose(self) -> None:
        await self._http.aclose()
