"""JWT verification (HS256, API.md "Authentication"): `AdminClaims` for admin endpoints,
`authorize_user()` for endpoints about one user (a token of that user or an admin; only
AUTH_ENFORCE_USERS=false, for local experiments, lets a request without a token through)."""

import time
from typing import Annotated, Literal

import jwt
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from shopkit.errors import Forbidden, Unauthenticated
from shopkit.settings import ServiceSettings


class Claims(BaseModel):
    sub: str
    role: Literal["user", "admin"]
    exp: int


def decode(token: str, settings: ServiceSettings) -> Claims:
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
    return None if token is None else decode(token, request.app.state.settings)


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
