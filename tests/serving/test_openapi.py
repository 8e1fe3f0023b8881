"""Schemathesis against the service's own OpenAPI document: nothing a client sends is a 5xx.

Every operation of ``/openapi.json`` gets generated cases (valid and invalid bodies, headers,
query strings), each sent with and without the token; the check is schemathesis's
``not_a_server_error``. (Driven with hypothesis directly: schemathesis's pytest plugin does not
load under this pytest.)
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.serving.conftest import AUTH, World

pytestmark = pytest.mark.integration


def test_no_request_is_a_server_error(world: World) -> None:
    client = world.app()
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/v1/decisions", "/v1/decisions:with-features", "/v1/model", "/readyz"} <= paths
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(headers=AUTH, checks=(not_a_server_error,))
            case.call_and_validate(checks=(not_a_server_error,))

        check()
