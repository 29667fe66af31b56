"""Tokens (API.md "Authentication"): only HS256 tokens signed with our secret, alive, within the
lifetime cap and for our issuer/audience when configured; and no process starts outside local mode
with a secret anyone knows or could guess."""

import base64
import json
import time
from typing import Any

import jwt
import pytest
from pydantic import ValidationError

from shopkit.errors import Unauthenticated
from shopkit.http.auth import Claims, decode, mint
from shopkit.settings import LOCAL_JWT_SECRET, ServiceSettings

SECRET = "a-test-secret-that-is-long-enough-32b"


def _settings(**overrides: Any) -> ServiceSettings:
    return ServiceSettings(local_mode=False, jwt_secret=SECRET, **overrides)


def _signed(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, "HS256")


def _now() -> int:
    return int(time.time())


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def test_a_valid_token_gives_its_claims() -> None:
    claims = decode(mint(SECRET, "42", "admin", ttl_s=600), _settings())
    assert isinstance(claims, Claims)
    assert (claims.sub, claims.role) == ("42", "admin")
    assert abs(claims.exp - (_now() + 600)) <= 2


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: mint(SECRET, "42", "user", ttl_s=-60), id="expired"),
        pytest.param(lambda: "not-a-token", id="malformed"),
        pytest.param(lambda: "a.b.c", id="three garbage parts"),
        pytest.param(
            lambda: (
                f"{_b64({'alg': 'none', 'typ': 'JWT'})}."
                f"{_b64({'sub': '42', 'role': 'admin', 'exp': _now() + 60})}."
            ),
            id="alg none",
        ),
        pytest.param(
            lambda: mint("another-secret-that-is-32-bytes-long!", "42", "admin"),
            id="wrongly signed",
        ),
        pytest.param(lambda: _signed({"sub": "42", "role": "user"}), id="without exp"),
        pytest.param(lambda: _signed({"role": "user", "exp": _now() + 60}), id="without sub"),
        pytest.param(
            lambda: _signed({"sub": "42", "role": "root", "exp": _now() + 60}), id="unknown role"
        ),
        pytest.param(
            lambda: mint(SECRET, "42", "user", ttl_s=2 * 86_400), id="lives longer than the cap"
        ),
        pytest.param(
            lambda: _signed({"sub": "42", "role": "user", "exp": _now() + 2 * 86_400}),
            id="no iat and exp past the cap",
        ),
        pytest.param(
            lambda: _signed(
                {"sub": "42", "role": "user", "iat": _now() - 10, "exp": _now() + 60},
                secret=LOCAL_JWT_SECRET,
            ),
            id="signed with the public local secret",
        ),
    ],
)
def test_a_token_we_did_not_issue_is_refused(token: Any) -> None:
    with pytest.raises(Unauthenticated):
        decode(token(), _settings())


def test_a_remembered_token_still_expires_and_is_only_remembered_for_its_settings() -> None:
    token = mint(SECRET, "42", "user", ttl_s=2)
    assert decode(token, _settings()).sub == "42"
    assert decode(token, _settings()).sub == "42"  # from memory this time
    # Another secret, issuer or lifetime cap verifies it again (and refuses it).
    with pytest.raises(Unauthenticated):
        decode(token, ServiceSettings(local_mode=False, jwt_secret="x" * 40))
    with pytest.raises(Unauthenticated):
        decode(token, _settings(jwt_issuer="https://id.shop"))
    with pytest.raises(Unauthenticated):
        decode(token, _settings(jwt_max_lifetime_s=1))
    # At its exp it is refused, as the library refuses it.
    exp = decode(token, _settings()).exp
    time.sleep(max(0.0, exp - time.time()) + 0.01)
    with pytest.raises(Unauthenticated, match="expired"):
        decode(token, _settings())


def test_issuer_and_audience_are_checked_when_configured() -> None:
    settings = _settings(jwt_issuer="https://id.shop", jwt_audience="shop-api")
    good = mint(SECRET, "42", "user", iss="https://id.shop", aud="shop-api")
    assert decode(good, settings).sub == "42"
    for claims in (
        {"iss": "https://evil", "aud": "shop-api"},
        {"iss": "https://id.shop", "aud": "other-api"},
        {"aud": "shop-api"},
        {"iss": "https://id.shop"},
    ):
        with pytest.raises(Unauthenticated):
            decode(mint(SECRET, "42", "user", **claims), settings)
    # Without configuration, neither is required.
    assert decode(mint(SECRET, "42", "user"), _settings()).sub == "42"


def test_the_lifetime_cap_is_configurable() -> None:
    token = mint(SECRET, "42", "user", ttl_s=600)
    assert decode(token, _settings(jwt_max_lifetime_s=600)).sub == "42"
    with pytest.raises(Unauthenticated, match="longer than 599"):
        decode(token, _settings(jwt_max_lifetime_s=599))


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        (LOCAL_JWT_SECRET, "public local default"),
        ("short-but-not-default", "shorter than 32 bytes"),
        ("x" * 31, "shorter than 32 bytes"),
    ],
)
def test_outside_local_mode_a_knowable_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, secret: str, why: str
) -> None:
    monkeypatch.setenv("SHOP_LOCAL_MODE", "false")
    monkeypatch.setenv("JWT_SECRET", secret)
    with pytest.raises(ValidationError, match=f"JWT_SECRET is .*{why}"):
        ServiceSettings()


def test_outside_local_mode_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOP_LOCAL_MODE", raising=False)
    monkeypatch.delenv("JWT_SECRET", raising=False)
    with pytest.raises(ValidationError, match="public local default"):
        ServiceSettings()
    monkeypatch.setenv("JWT_SECRET", "y" * 32)
    settings = ServiceSettings()
    assert not settings.local_mode
    assert settings.auth_enforce_users


def test_local_mode_accepts_the_local_default_and_still_confines_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOP_LOCAL_MODE", "true")
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("AUTH_ENFORCE_USERS", raising=False)
    settings = ServiceSettings()
    assert settings.jwt_secret == LOCAL_JWT_SECRET
    assert settings.auth_enforce_users


def test_turning_confinement_off_is_for_local_experiments_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTH_ENFORCE_USERS", "false")
    monkeypatch.setenv("JWT_SECRET", "y" * 32)
    monkeypatch.setenv("SHOP_LOCAL_MODE", "false")
    with pytest.raises(ValidationError, match="AUTH_ENFORCE_USERS=false"):
        ServiceSettings()
    monkeypatch.setenv("SHOP_LOCAL_MODE", "true")
    assert not ServiceSettings().auth_enforce_users
