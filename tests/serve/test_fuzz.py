"""A fuzz run against the server's own OpenAPI document (schemathesis): every route, generated bodies and
paths, zero 5xx answers, and every answer matches the status codes and schemas the document declares.

Built on schemathesis' documented strategy API (`schema[path][method].as_strategy()` under Hypothesis'
`@given`), not on its pytest plugin: the plugin rewrites pytest internals (`Function._nodeid`) and broke on
pytest 9.2, so this test runs the same on every pytest the project supports. As the plugin did, each operation
draws positive and negative cases alike, and every failing operation is reported, not only the first.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from servers import TOKEN, Server, serving

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def fuzzed(packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = [f"{k}={packages[k]}" for k in ("img", "tab", "txt")]
    with serving(args, tmp_path_factory.mktemp("fuzz"), env={"SHIPML_API_TOKEN": TOKEN}) as server:
        yield server


def _fuzz(operation: schemathesis.APIOperation) -> None:
    """Raises the first (shrunk) case of `operation` whose answer fails a check."""
    cases = st.one_of([operation.as_strategy(generation_mode=mode) for mode in schemathesis.GenerationMode])

    @FUZZ
    @given(case=cases)
    def one_case(case: schemathesis.Case) -> None:
        response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
        case.validate_response(response, checks=CHECKS)

    one_case()


def test_no_server_errors_and_answers_match_the_document(fuzzed: Server) -> None:
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{fuzzed.port}/openapi.json")
    operations = [op for methods in schema.values() for op in methods.values()]
    assert len(operations) >= 10, f"the document lists only {[op.label for op in operations]}"
    failures = []
    for operation in operations:
        try:
            _fuzz(operation)
        # a check's FailureGroup (a BaseExceptionGroup, so named here), or e.g. the server refusing the connection
        except (FailureGroup, Exception) as exc:
            failures.append(f"{operation.label}:\n{''.join(traceback.format_exception_only(exc))}")
    if failures:
        pytest.fail(f"{len(failures)} of {len(operations)} operations failed:\n\n" + "\n".join(failures), pytrace=False)
