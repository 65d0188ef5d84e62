"""Schemathesis against /swagger of a running `imagecore serve`: no 5xx, no schema violation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from service_support import Served, serving, token

pytestmark = pytest.mark.integration

EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    env = {"RATE_LIMIT_USER_PER_MINUTE": "0", "RATE_LIMIT_ADDRESS_PER_MINUTE": "0"}
    with serving(tmp_path_factory.mktemp("schemathesis"), env) as served:
        yield served


@pytest.fixture(scope="module")
def headers(served: Served) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(served, 'fuzzer', admin=True)}"}


def test_the_api_honours_its_openapi_document(served: Served, headers: dict[str, str]) -> None:
    # One test over every operation (schemathesis's pytest plugin does not load on pytest 9).
    schema = schemathesis.openapi.from_url(served.base + "/swagger")
    failures: dict[str, str] = {}
    exercised = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue  # SSE streams never end; tests/unit/test_events.py covers them

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=served.base, headers=headers, checks=CHECKS, timeout=30)

        exercised.append(operation.label)
        try:
            call()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect all, then report
            failures[operation.label] = str(exc)[:2000]
    assert len(exercised) >= 12
    assert failures == {}
