"""One error hierarchy for every service, rendered as problem+json in one place (api.py).
Domain and service code raise these; nothing below the API layer knows about HTTP.

An error whose code is always the same names it on the class (`code = ErrorCode.…`), so that a
route can list it among the answers of its OpenAPI document (shopkit.http.answers.raises)."""

from typing import ClassVar

from shop_contracts import ErrorCode


class DomainError(Exception):
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"
    code: ErrorCode

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
    code = ErrorCode.UNAUTHENTICATED

    def __init__(self, detail: str = "A valid bearer token is required.") -> None:
        super().__init__(self.code, detail)


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"
    code = ErrorCode.FORBIDDEN

    def __init__(self, detail: str = "This token may not do that.") -> None:
        super().__init__(self.code, detail)


class Unavailable(DomainError):
    """Answered 503 with Retry-After: nothing was done, the same request may be sent again."""

    status = 503
    title = "Service unavailable"
    code = ErrorCode.SERVICE_UNAVAILABLE

    def __init__(self, detail: str) -> None:
        super().__init__(self.code, detail)
