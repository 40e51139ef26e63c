"""Property-based fuzzing of the API against its own OpenAPI schema (schemathesis): no 5xx, no
response that violates the schema, for generated valid and invalid requests.

`positive_data_acceptance` is left out on purpose: the schema cannot say which experiments and
metrics exist or which units are in an experiment, so a schema-valid outcome for experiment
"0" or metric "0" is rightly refused with a 4xx naming the problem.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from abtest.api import create_app
from abtest.devtools.serving import ServerHandle, serve_app_in_thread
from tests.api_support import EXAMPLES, service_settings


@pytest.fixture(scope="module")
def api_server(redis_url, llm_server, tmp_path_factory) -> Iterator[ServerHandle]:
    patch = pytest.MonkeyPatch()
    patch.setenv("REDIS_URL", redis_url)
    patch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    home = tmp_path_factory.mktemp("api-home")
    app = create_app(service_settings(experiments_dir=EXAMPLES, home=home))
    with serve_app_in_thread(app, ready_path="/health") as handle:
        yield handle
    patch.undo()


@pytest.fixture(scope="module")
def api_schema(api_server: ServerHandle):
    return schemathesis.openapi.from_url(f"{api_server.root_url}/openapi.json")


def test_no_server_errors_and_no_schema_violations(api_schema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=50,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
