"""Property-based run of every operation in the live server's ``/openapi.json`` (schemathesis), with a valid
client key, on SQLite and PostgreSQL: no generated request, valid or not, may get a 5xx."""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis import HealthCheck, Phase

from tests.service.conftest import Service

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402

EXAMPLES_PER_OPERATION = 15


def test_openapi_operations_never_answer_5xx(service: Service) -> None:
    schema = schemathesis.openapi.from_url(f"{service.base_url}/openapi.json")
    headers = {"X-API-Key": service.keys["client"]}
    failures: list[str] = []
    n_operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        n_operations += 1

        @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @hypothesis.given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=service.base_url, headers=headers, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        try:
            run()
        except Exception as err:  # collect every failing operation, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {type(err).__name__}: {err}"[:2000])
    assert n_operations >= 10, f"only {n_operations} operations in the schema"
    assert not failures, "\n\n".join(failures)
    assert service.process.poll() is None
