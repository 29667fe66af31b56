import hashlib
import hmac


def signature(body: bytes, secret: str) -> str:
    """`X-Signature` of API.md: `sha256=` + hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
