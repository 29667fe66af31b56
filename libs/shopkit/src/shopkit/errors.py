"""One error hierarchy for every service, rendered as problem+json in one place (api.py).
Domain and service code raise these; nothing below the API layer knows about HTTP."""

from typing import ClassVar

from shop_contracts import ErrorCode


class DomainError(Exception):
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Unprocessable(DomainError):
    status = 422
    title = "Unprocessable request"


class Unauthenticated(DomainError):
    status = 401
    title = "Unauthenticated"

    def __init__(self, detail: str = "A valid bearer token is required.") -> None:
        super().__init__(ErrorCode.UNAUTHENTICATED, detail)


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"

    def __init__(self, detail: str = "This token may not do that.") -> None:
        super().__init__(ErrorCode.FORBIDDEN, detail)


class Unavailable(DomainError):
    status = 503
    title = "Service unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.SERVICE_UNAVAILABLE, detail)
