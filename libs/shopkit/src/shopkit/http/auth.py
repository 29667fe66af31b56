"""JWT verification (HS256, API.md "Authentication"): `AdminClaims` for admin endpoints,
`authorize_user()` for endpoints about one user (a token of that user or an admin; only
AUTH_ENFORCE_USERS=false, for local experiments, lets a request without a token through).

A client sends the same token with every request until it expires: a token once verified is
remembered (by its exact text and the settings it was verified under) until its `exp`, so the
signature and claims are checked once per token, not once per request (they were a sixth of a
coupon request's CPU)."""

import time
from typing import Annotated, Final, Literal

import jwt
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from shopkit.errors import Forbidden, Unauthenticated
from shopkit.settings import ServiceSettings


class Claims(BaseModel):
    sub: str
    role: Literal["user", "admin"]
    exp: int


VERIFIED_TOKENS_MAX: Final = 4096
_verified: dict[tuple[str, str, str | None, str | None, int], Claims] = {}
"""(token, secret, issuer, audience, max lifetime) → its claims; only tokens that passed."""


def decode(token: str, settings: ServiceSettings) -> Claims:
    """`verify()`, once per token until it expires."""
    key = (
        token,
        settings.jwt_secret,
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.jwt_max_lifetime_s,
    )
    claims = _verified.get(key)
    if claims is not None and claims.exp > time.time():
        return claims
    _verified.pop(key, None)
    claims = verify(token, settings)
    if len(_verified) >= VERIFIED_TOKENS_MAX:
        del _verified[next(iter(_verified))]  # the oldest
    _verified[key] = claims
    return claims


def verify(token: str, settings: ServiceSettings) -> Claims:
    """The claims of a token signed with HS256 by our secret, with `exp` in the future, `iss` and
    `aud` as configured, and a lifetime within JWT_MAX_LIFETIME_S; anything else is 401."""
    required = ["exp", "sub"]
    if settings.jwt_issuer is not None:
        required.append("iss")
    if settings.jwt_audience is not None:
        required.append("aud")
    try:
        raw = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=["HS256"],  # never "none", never another key type
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            options={"require": required, "verify_aud": settings.jwt_audience is not None},
        )
        claims = Claims.model_validate(raw)
    except (jwt.PyJWTError, ValidationError) as exc:
        raise Unauthenticated(f"Invalid token: {exc}") from exc
    issued_at = raw.get("iat")
    start = issued_at if isinstance(issued_at, int | float) else time.time()
    if claims.exp - start > settings.jwt_max_lifetime_s:
        raise Unauthenticated(
            f"Invalid token: it lives longer than {settings.jwt_max_lifetime_s} s."
        )
    return claims


def claims_of(authorization: str | None, settings: ServiceSettings) -> Claims | None:
    """The claims of an `Authorization: Bearer <token>` header; None without the header."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("Authorization must be 'Bearer <token>'.")
    return decode(token.strip(), settings)


async def optional_claims(request: Request) -> Claims | None:
    return claims_of(request.headers.get("authorization"), request.app.state.settings)


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
    authorize(request.app.state.settings, claims, user_id)


def authorize(settings: ServiceSettings, claims: Claims | None, user_id: int) -> None:
    if claims is None:
        if settings.auth_enforce_users:
            raise Unauthenticated()
        return
    if claims.role != "admin" and claims.sub != str(user_id):
        raise Forbidden("The token's subject is another user.")


def mint(
    secret: str,
    sub: str,
    role: Literal["user", "admin"],
    ttl_s: int = 3600,
    **claims: str | int,
) -> str:
    """Demo and test tokens (`make token`); production tokens come from the identity provider."""
    now = int(time.time())
    body = {"sub": sub, "role": role, "iat": now, "exp": now + ttl_s, **claims}
    return jwt.encode(body, secret, "HS256")
