"""The MongoDB adapter lets no pymongo exception cross the port (no server needed)."""

from __future__ import annotations

import pytest
from bson.errors import InvalidDocument
from pymongo.errors import (
    AutoReconnect,
    ConfigurationError,
    DuplicateKeyError,
    InvalidOperation,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from adapters.mongo import _translated
from imagecore.errors import (
    ConflictError,
    DependencyUnavailable,
    ImageCoreError,
    ValidationError,
)

SHUTTING_DOWN = 91
BAD_VALUE = 2


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (DuplicateKeyError("E11000 duplicate key", 11000), ConflictError),
        (ServerSelectionTimeoutError("127.0.0.1:27017: connection refused"), DependencyUnavailable),
        (AutoReconnect("connection closed"), DependencyUnavailable),
        (NetworkTimeout("timed out"), DependencyUnavailable),
        (OperationFailure("shutdown in progress", SHUTTING_DOWN), DependencyUnavailable),
        (
            OperationFailure("x", BAD_VALUE, {"errorLabels": ["RetryableWriteError"]}),
            DependencyUnavailable,
        ),
        (InvalidOperation("Cannot use AsyncMongoClient after close"), DependencyUnavailable),
        (OperationFailure("invalid key", BAD_VALUE), ImageCoreError),
        (ConfigurationError("bad URI"), ImageCoreError),
        (InvalidDocument("key names must not contain the NULL byte"), ValidationError),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), ValidationError),
    ],
)
def test_each_driver_error_becomes_one_domain_error(
    raised: Exception, expected: type[ImageCoreError]
) -> None:
    with pytest.raises(ImageCoreError) as caught, _translated():
        raise raised
    assert type(caught.value) is expected
    assert caught.value.__cause__ is raised


def test_a_long_server_selection_message_is_cut_short() -> None:
    topology = "Topology Description: " + "x" * 5000
    with pytest.raises(DependencyUnavailable) as caught, _translated():
        raise ServerSelectionTimeoutError(f"127.0.0.1:1: refused, {topology}")
    assert caught.value.message == "the database did not answer"
    assert caught.value.detail.startswith("mongo: 127.0.0.1:1: refused")
    assert len(str(caught.value)) < 300
