"""One exception tree. Backends translate driver errors into these (``raise ... from exc``);
``shoal.api.errors`` maps them to HTTP responses in one place.
"""

from __future__ import annotations

from typing import Any


class ShoalError(Exception):
    """Root of every error Shoal raises on purpose."""

    status_code = 500
    code = "internal_error"

    def __init__(self, details: Any = None) -> None:
        super().__init__(details)
        self.details = details

    def __str__(self) -> str:
        return str(self.details) if self.details is not None else self.code


class ConfigurationError(ShoalError):
    """Settings that cannot work together (raised at start-up)."""

    code = "configuration_error"


class MissingDependencyError(ShoalError, ImportError):
    """An optional driver is not installed; the message names the extra that provides it."""

    code = "missing_dependency"

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed: pip install 'shoal[{extra}]'")
        self.package = package
        self.extra = extra


class InvalidInput(ShoalError):
    """The request is well-formed JSON but breaks a rule; ``details`` names the field."""

    status_code = 400
    code = "invalid_schema"


class Unauthorized(ShoalError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ShoalError):
    status_code = 403
    code = "forbidden"


class NotFound(ShoalError):
    status_code = 404
    code = "not_found"


class CollectionNotFound(NotFound):
    code = "collection_not_found"


class Conflict(ShoalError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ShoalError):
    status_code = 413
    code = "payload_too_large"


class Overloaded(ShoalError):
    """A bounded queue is full: the caller should back off and retry."""

    status_code = 429
    code = "overloaded"

    def __init__(self, details: Any = None, retry_after: float = 1.0) -> None:
        super().__init__(details)
        self.retry_after = retry_after


class RateLimited(Overloaded):
    code = "rate_limit_exceeded"


class BackendError(ShoalError):
    """A backend (store, log, cache, provider) failed; ``details`` names which."""

    status_code = 503
    code = "backend_unavailable"


class EmbeddingError(BackendError):
    code = "embedding_failed"


class ShuttingDown(ShoalError):
    status_code = 503
    code = "shutting_down"


class Timeout(ShoalError):
    status_code = 504
    code = "timeout"
