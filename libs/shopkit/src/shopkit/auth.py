"""JWT verification (HS256, API.md "Authentication"): `AdminClaims` for admin endpoints,
`authorize_user()` for endpoints about one user (enforced when AUTH_ENFORCE_USERS is on)."""

from typing import Annotated, Literal

import jwt
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from shopkit.errors import Forbidden, Unauthenticated


class Claims(BaseModel):
    sub: str
    role: Literal["user", "admin"]
    exp: int


def decode(token: str, secret: str) -> Claims:
    try:
        raw = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
        return Claims.model_validate(raw)
    except (jwt.PyJWTError, ValidationError) as exc:
        raise Unauthenticated(f"Invalid token: {exc}") from exc


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("Authorization must be 'Bearer <token>'.")
    return token.strip()


async def optional_claims(request: Request) -> Claims | None:
    token = _bearer(request)
    return None if token is None else decode(token, request.app.state.settings.jwt_secret)


async def require_admin(claims: Annotated[Claims | None, Depends(optional_claims)]) -> Claims:
    if claims is None:
        raise Unauthenticated()
    if claims.role != "admin":
        raise Forbidden("This endpoint needs the admin role.")
    return claims


OptionalClaims = Annotated[Claims | None, Depends(optional_claims)]
AdminClaims = Annotated[Claims, Depends(require_admin)]


def authorize_user(request: Request, claims: Claims | None, user_id: int) -> None:
    """A user may act only as themselves; an admin as anyone."""
    if claims is None:
        if request.app.state.settings.auth_enforce_users:
            raise Unauthenticated()
        return
    if claims.role != "admin" and claims.sub != str(user_id):
        raise Forbidden("The token's subject is another user.")


def mint(secret: str, sub: str, role: Literal["user", "admin"], ttl_s: int = 3600) -> str:
    """Demo and test tokens (`make token`)."""
    import time

    return jwt.encode({"sub": sub, "role": role, "exp": int(time.time()) + ttl_s}, secret, "HS256")
