"""Tokens as the services' clients send them: a bearer header for one user or admin, and an
httpx auth that acts as the user each request is about."""

import re
from collections.abc import Generator
from typing import Literal

import httpx
import orjson

from shopkit.http.auth import mint


def bearer(
    secret: str, sub: int | str, role: Literal["user", "admin"] = "user", ttl_s: int = 3600
) -> dict[str, str]:
    """The Authorization header of a token for `sub`."""
    return {"Authorization": f"Bearer {mint(secret, str(sub), role, ttl_s)}"}


_USER_IN_PATH = re.compile(r"^/(?:points|users)/([^/]+)")
_ORDER_BY_ID = re.compile(r"^/orders/[^/]+/?$")


class ActAsUser(httpx.Auth):
    """A test client that acts as the user each request is about, as that user's own app would:
    a user token for the user id in the path (`/points/{id}…`, `/users/{id}/…`) or in the JSON
    body's `user_id`. An order read by id (`GET /orders/{id}`) goes as an admin (the owner is not
    in the request). A request with its own Authorization header, or about no user, is sent as is:
    tests of confinement and of admin endpoints say which token they send."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "authorization" not in request.headers:
            headers = self._for(request)
            if headers:
                request.headers.update(headers)
        yield request

    def _for(self, request: httpx.Request) -> dict[str, str] | None:
        path = request.url.path
        if found := _USER_IN_PATH.match(path):
            return bearer(self.secret, found.group(1))
        if request.method == "GET" and _ORDER_BY_ID.match(path):
            return bearer(self.secret, 0, "admin")
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = orjson.loads(request.content)
            except orjson.JSONDecodeError:
                return None
            if isinstance(body, dict) and "user_id" in body:
                return bearer(self.secret, str(body["user_id"]))
        return None
