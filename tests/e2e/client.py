"""A thin HTTP client of the shop's public API, for the end-to-end tests."""

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import httpx

from shopkit.testing.processes import System

TERMINAL = {"PAID", "FAILED"}


@dataclass
class Shop:
    http: httpx.AsyncClient
    system: System
    admin_token: str

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def url(self, service: str, path: str) -> str:
        return f"{self.system.url(service)}{path}"

    @staticmethod
    def new_user() -> int:
        return random.randint(1, 2**62)

    async def _json(
        self, method: str, service: str, path: str, expected: int = 200, **request: Any
    ) -> Any:
        """The JSON answer of a call that must succeed with `expected`."""
        r = await self.http.request(method, self.url(service, path), **request)
        assert r.status_code == expected, r.text
        return r.json()

    async def create_product(self, name: str, price: int, stock: int) -> dict[str, Any]:
        body = {"name": name, "price": price, "stock": stock}
        return dict(
            await self._json("POST", "product", "/products", 201, json=body, headers=self.admin)
        )

    async def product(self, product_id: int) -> dict[str, Any]:
        return dict(await self._json("GET", "product", f"/products/{product_id}"))

    async def charge(self, user_id: int, amount: int) -> int:
        answer = await self._json(
            "POST", "point", f"/points/{user_id}/charge", json={"amount": amount}
        )
        return int(answer["balance"])

    async def balance(self, user_id: int) -> int:
        return int((await self._json("GET", "point", f"/points/{user_id}"))["balance"])

    async def history(self, user_id: int) -> list[dict[str, Any]]:
        return list((await self._json("GET", "point", f"/points/{user_id}/history"))["items"])

    async def create_coupon(self, **fields: Any) -> dict[str, Any]:
        body = {
            "name": "welcome",
            "discount_type": "FIXED",
            "discount_value": 1_000,
            "total_quantity": 100,
            "valid_days": 7,
            "min_order_amount": 0,
            **fields,
        }
        return dict(
            await self._json("POST", "coupon", "/coupons", 201, json=body, headers=self.admin)
        )

    async def issue(self, coupon_id: int, user_id: int) -> int:
        path = f"/coupons/{coupon_id}/issue"
        issued = await self._json("POST", "coupon", path, 201, json={"user_id": user_id})
        return int(issued["user_coupon_id"])

    async def user_coupon(self, user_id: int, user_coupon_id: int) -> dict[str, Any]:
        held = await self._json("GET", "coupon", f"/users/{user_id}/coupons")
        [found] = [c for c in held["items"] if c["user_coupon_id"] == user_coupon_id]
        return dict(found)

    async def place_order(
        self,
        user_id: int,
        items: list[tuple[int, int]],
        user_coupon_id: int | None = None,
        *,
        wait_s: int = 0,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        headers = {}
        if wait_s:
            headers["Prefer"] = f"wait={wait_s}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        body = {
            "user_id": user_id,
            "items": [{"product_id": p, "quantity": q} for p, q in items],
            "user_coupon_id": user_coupon_id,
        }
        return await self.http.post(self.url("order", "/orders"), json=body, headers=headers)

    async def order(self, order_id: str) -> dict[str, Any]:
        return dict(await self._json("GET", "order", f"/orders/{order_id}"))

    async def order_until_terminal(self, order_id: str, timeout_s: float = 90) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            order = await self.order(order_id)
            if order["status"] in TERMINAL:
                return order
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"order {order_id} still {order['status']}")
            await asyncio.sleep(1.0)  # gentle: a thousand pollers must not starve the saga

    async def order_and_wait(
        self, user_id: int, items: list[tuple[int, int]], user_coupon_id: int | None = None
    ) -> dict[str, Any]:
        r = await self.place_order(user_id, items, user_coupon_id, wait_s=30)
        assert r.status_code in (201, 202), r.text
        order = dict(r.json())
        if order["status"] not in TERMINAL:
            order = await self.order_until_terminal(order["order_id"])
        return order

    async def eventually(self, probe: Any, expected: Any, timeout_s: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (value := await probe()) != expected:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {expected!r}, still {value!r}")
            await asyncio.sleep(0.2)
