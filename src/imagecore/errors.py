"""Every error the imagecore domain and its adapters raise.

Adapters translate their drivers' exceptions into these at one place each, so
no ``S3Error``, ``PyMongoError``, ``nats.errors.*`` or ``pyvips.Error`` ever
crosses a port. The HTTP layer maps them to status codes in one table.

The tree::

    ImageCoreError
    ├── ValidationError            bad input from a caller (HTTP 400)
    │   ├── UnknownProduct         no product has that id or key (HTTP 400/404)
    │   └── InvalidParameter       a product parameter is missing, mistyped or out of range
    ├── NotFound                   no such object, or not the caller's (HTTP 404)
    │   └── ObjectNotFound         storage has no object at that key
    ├── LimitExceeded              a configured limit was passed (HTTP 413)
    │   ├── FileTooLarge           the upload is larger than the product allows
    │   ├── TooManyFiles           the instruction holds as many files as allowed
    │   └── ImageTooLarge          too many pixels or frames (read from the header)
    ├── UnsupportedMediaType       a format we do not decode (HTTP 415)
    ├── InvalidTransition          a status change the state machine forbids (HTTP 409)
    ├── ConflictError              a concurrent writer won a conditional update (HTTP 409)
    ├── ProcessingError            the image cannot be processed (the file ends FAILED)
    │   └── CorruptImage           the bytes are truncated or malformed
    ├── ProcessingTimeout          processing took longer than its limit (transient)
    ├── ProcessorCrashed           the process running the decoder died (transient, bounded)
    ├── DependencyUnavailable      a database, bucket, broker or disk cannot serve now (HTTP 503)
    │   └── StorageFull            no space left to write (transient: space may come back)
    ├── ServiceBusy                too much work is queued already (HTTP 503)
    └── FileAbandoned              why recovery failed a file nobody could finish
        ├── WorkerLost             its worker stopped, again and again
        ├── TooManyAttempts        its attempts ran out
        └── Stale                  it never finished within the stale limit
"""

from __future__ import annotations

import errno

__all__ = [
    "ConflictError",
    "CorruptImage",
    "DependencyUnavailable",
    "FileAbandoned",
    "FileTooLarge",
    "ImageCoreError",
    "ImageTooLarge",
    "InvalidParameter",
    "InvalidTransition",
    "LimitExceeded",
    "NotFound",
    "ObjectNotFound",
    "ProcessingError",
    "ProcessingTimeout",
    "ProcessorCrashed",
    "ServiceBusy",
    "Stale",
    "StorageFull",
    "TooManyAttempts",
    "TooManyFiles",
    "UnknownProduct",
    "UnsupportedMediaType",
    "ValidationError",
    "WorkerLost",
    "out_of_space",
]


class ImageCoreError(Exception):
    """Base of every error imagecore raises on purpose.

    Its class says what becomes of a file whose processing raised it: failed
    at once (not ``retryable``), or retried, spending one of its attempts or
    not (``spends_attempt``: an outage is not the file's fault).
    """

    #: A short stable code for clients and for the ``error_code`` of a failed file.
    code = "internal_error"
    #: Whether processing the file again may succeed.
    retryable = True
    #: Whether a retry after this error counts against the file's attempts.
    spends_attempt = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(ImageCoreError):
    """The caller sent something malformed or inconsistent."""

    code = "validation_error"


class UnknownProduct(ValidationError):
    """No product has the given id or key."""

    code = "unknown_product"


class InvalidParameter(ValidationError):
    """A product parameter is missing, of the wrong type or out of range."""

    code = "invalid_parameter"

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"parameter {name!r}: {message}")
        self.name = name
        self.reason = message

    def __reduce__(self) -> tuple[type[InvalidParameter], tuple[str, str]]:
        # Errors cross a process pool by pickling; keep both arguments.
        return (type(self), (self.name, self.reason))


class NotFound(ImageCoreError):
    """The object does not exist or does not belong to the caller."""

    code = "not_found"
    retryable = False


class ObjectNotFound(NotFound):
    """Storage holds no object under the key."""

    code = "object_not_found"


class LimitExceeded(ImageCoreError):
    """A configured limit was passed."""

    code = "limit_exceeded"
    retryable = False


class FileTooLarge(LimitExceeded):
    """The upload has more bytes than the product accepts."""

    code = "file_too_large"


class TooManyFiles(LimitExceeded):
    """The instruction already holds as many files as the product accepts."""

    code = "too_many_files"


class ImageTooLarge(LimitExceeded):
    """The image header declares more pixels or frames than allowed."""

    code = "image_too_large"


class UnsupportedMediaType(ImageCoreError):
    """The bytes are not in a format we decode."""

    code = "unsupported_media_type"
    retryable = False


class InvalidTransition(ImageCoreError):
    """The state machine forbids this status change."""

    code = "invalid_transition"


class ConflictError(ImageCoreError):
    """Another writer changed the record first; the conditional update lost."""

    code = "conflict"


class ProcessingError(ImageCoreError):
    """The image cannot be processed with these parameters; retrying will not help."""

    code = "processing_error"
    retryable = False


class CorruptImage(ProcessingError):
    """The file is truncated or malformed."""

    code = "corrupt_image"


class ProcessingTimeout(ImageCoreError):
    """Processing one file took longer than its time limit."""

    code = "processing_timeout"


class ProcessorCrashed(ImageCoreError):
    """The process running the decoder died, likely a crash in native code."""

    code = "processor_crashed"


class DependencyUnavailable(ImageCoreError):
    """A database, bucket, broker or disk cannot serve now; retrying later may work.

    ``message`` reaches clients and a file's record, so it names the dependency
    but never quotes a driver or the OS; ``detail`` keeps their words for the
    log (``str()`` of the error gives both).
    """

    code = "dependency_unavailable"
    spends_attempt = False

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message} ({self.detail})" if self.detail else self.message

    def __reduce__(self) -> tuple[type[DependencyUnavailable], tuple[str, str]]:
        # Raised in the processor's own process, it must cross the pipe whole.
        return type(self), (self.message, self.detail)


class StorageFull(DependencyUnavailable):
    """No space is left on the disk or the volume to write; it may come back."""

    code = "storage_full"


class ServiceBusy(ImageCoreError):
    """Too many files are waiting already; try again later."""

    code = "service_busy"


class FileAbandoned(ImageCoreError):
    """Recovery gave up on a file that nobody could finish; its code says why."""

    retryable = False


class WorkerLost(FileAbandoned):
    """The worker holding the file stopped before finishing it, as many times as allowed."""

    code = "worker_lost"


class TooManyAttempts(FileAbandoned):
    """The file was handed back as many times as it may be."""

    code = "too_many_attempts"


class Stale(FileAbandoned):
    """The file did not finish within the stale limit."""

    code = "stale"


_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` is the OS saying a disk or a quota is full."""
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE
