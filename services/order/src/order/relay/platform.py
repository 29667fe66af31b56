"""The data platform's HTTP API, as the relay sees it: one signed, idempotent POST."""

from uuid import UUID

import httpx

from order.relay.signing import signature


class DeliveryFailed(Exception):
    """No 2xx: an error status, a timeout or no connection. Worth another attempt."""


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
            raise DeliveryFailed(f"HTTP {response.status_code}: {response.text[:300]}")
        return response.status_code

    async def aclose(self) -> None:
        await self._http.aclose()
