"""Domain errors. Services raise these; the HTTP layer maps them to the error envelope.

Each carries a stable machine-readable `code` and a human `message`. No FastAPI here.
"""

from __future__ import annotations

from typing import Any, ClassVar


class EntitleError(Exception):
    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "BAD_REQUEST"
    # The official client retries 409s unless told not to; a conflict never heals by resending.
    retryable: ClassVar[bool | None] = None

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidArgument(EntitleError):
    status_code = 400
    code = "INVALID_ARGUMENT"


class Unauthenticated(EntitleError):
    status_code = 401
    code = "UNAUTHENTICATED"


class PermissionDenied(EntitleError):
    status_code = 403
    code = "PERMISSION_DENIED"


class NotFound(EntitleError):
    status_code = 404
    code = "NOT_FOUND"

    def __init__(self, kind: str, ref: str) -> None:
        super().__init__(f"{kind} '{ref}' was not found")
        self.kind = kind
        self.ref = ref


class AlreadyExists(EntitleError):
    status_code = 409
    code = "ALREADY_EXISTS"
    retryable = False

    def __init__(self, kind: str, ref: str) -> None:
        super().__init__(f"{kind} '{ref}' already exists")
        self.kind = kind
        self.ref = ref


class FailedPrecondition(EntitleError):
    """The request is well formed but the entity's state forbids it (e.g. editing a published plan)."""

    status_code = 409
    code = "FAILED_PRECONDITION"
    retryable = False


class BillingProviderError(EntitleError):
    """The billing provider failed while the request waited for it (only checkout and portal wait)."""

    status_code = 502
    code = "BILLING_PROVIDER_ERROR"
    retryable = False  # the subscription it was for is canceled; a blind resend would not revive it


class UnsupportedField(EntitleError):
    """A field of the contract Entitle does not implement (yet) was sent with a value: the request is
    refused rather than answered as if the field had been honoured. `field` is its JSON path
    (`billingInformation.taxIds`, `entitlements[0].type`)."""

    status_code = 400
    code = "UNSUPPORTED_FIELD"

    def __init__(self, field: str, problem: str = "not supported by Entitle yet; leave it out or send null") -> None:
        super().__init__(f"{field}: {problem}", details=[{"field": field, "problem": problem}])
        self.field = field


class UnknownField(EntitleError):
    """A request field that is neither in the contract nor one of Entitle's own: most often a misspelt
    name. Ignoring it would answer as if the caller's intent had been honoured, so it is refused.
    `field` is its JSON path."""

    status_code = 400
    code = "UNKNOWN_FIELD"

    def __init__(self, field: str) -> None:
        problem = "not a field of this request; check its spelling and the API reference"
        super().__init__(f"{field}: {problem}", details=[{"field": field, "problem": problem}])
        self.field = field
