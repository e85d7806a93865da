"""Property-based run of every operation in the live server's ``/openapi.json`` (schemathesis) on SQLite and
PostgreSQL: no generated request, valid or not, may get a 5xx.

Each operation is called with a key of a role it admits and on an existing prediction, so that generated
bodies get past authentication and lookup into validation and storage, with data that fits the schema and
data that does not (negative mode).
"""

from __future__ import annotations

import hypothesis
import hypothesis.errors
import pytest
from hypothesis import HealthCheck, Phase

from tests.service.conftest import RawEcg, Service
from tests.service.test_access_matrix import MATRIX

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

EXAMPLES_PER_OPERATION = 15


def test_openapi_operations_never_answer_5xx(service: Service, raw_ecg: RawEcg) -> None:
    schema = schemathesis.openapi.from_url(f"{service.base_url}/openapi.json")
    with service.client("client") as client:
        prediction_id = client.post("/v1/predictions", json=raw_ecg.payload()).json()["id"]
    failures: list[str] = []
    n_operations = n_cases = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        n_operations += 1
        role = min(MATRIX.get((operation.method.upper(), operation.path), frozenset({"client"})))
        headers = {"X-API-Key": service.keys[role]}
        fixed = {"prediction_id": prediction_id} if "{prediction_id}" in operation.path else None
        has_input = any(operation.iter_parameters()) or any(operation.body)
        for mode in GenerationMode if has_input else [GenerationMode.POSITIVE]:  # nothing to negate otherwise

            @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                                 derandomize=True, phases=[Phase.explicit, Phase.generate],
                                 suppress_health_check=list(HealthCheck))
            @hypothesis.given(case=operation.as_strategy(mode, path_parameters=fixed))
            def run(case: schemathesis.Case) -> None:
                nonlocal n_cases
                n_cases += 1
                # run() is called in this same iteration, so the loop's headers are the ones meant
                response = case.call(base_url=service.base_url, headers=headers, timeout=30)  # noqa: B023
                case.validate_response(response, checks=[not_a_server_error])

            try:
                run()
            except hypothesis.errors.Unsatisfiable as err:
                if mode is not GenerationMode.NEGATIVE:  # a free-text path parameter has no invalid value
                    failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}, {role}): {err}")
            except Exception as err:  # collect every failing operation, then report them together
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}, {role}): "
                                f"{type(err).__name__}: {err}"[:2000])
    print(f"schemathesis: {n_cases} requests over {n_operations} operations")
    assert n_operations >= 10, f"only {n_operations} operations in the schema"
    assert not failures, "\n\n".join(failures)
    assert service.process.poll() is None
