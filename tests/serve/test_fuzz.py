"""A fuzz run against the server's own OpenAPI document (schemathesis): every route, generated bodies and
paths, zero 5xx answers, and every answer matches the status codes and schemas the document declares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from servers import TOKEN, Server, serving


@pytest.fixture(scope="module")
def fuzzed(packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = [f"{k}={packages[k]}" for k in ("img", "tab", "txt")]
    with serving(args, tmp_path_factory.mktemp("fuzz"), env={"SHIPML_API_TOKEN": TOKEN}) as server:
        yield server


@pytest.fixture(scope="module")
def api(fuzzed: Server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{fuzzed.port}/openapi.json")


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_no_server_errors_and_answers_match_the_document(case: schemathesis.Case) -> None:
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             response_schema_conformance])
