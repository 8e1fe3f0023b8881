"""Schemathesis against the service's own OpenAPI document, with every check it has.

Every operation of ``/openapi.json`` gets generated cases (valid and invalid bodies, headers,
query strings), each sent with and without the token, and each response goes through all of
schemathesis's checks: no 5xx, every status code and body documented, the response matching its
schema, invalid data rejected, valid data accepted, authentication enforced. The document must say
what the service enforces. One check is replaced by a stricter one of ours: the service answers 503
by design when it cannot decide honestly (stale or not yet warm features — generated rows are
dated anywhere from 1970 on), so a 5xx must be exactly that documented 503, with its reason, and
never anything else. (Driven with hypothesis directly: schemathesis's pytest plugin does not load
under this pytest.)
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.serving.conftest import AUTH, World

pytestmark = pytest.mark.integration

#: the reasons a 503 may give (raytrader.serving.service)
UNAVAILABLE = ("no decision: ", "no model is serving", "Feast online store unavailable")


@schemathesis.check
def only_the_documented_503(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 5xx is a 503 naming why no honest decision could be made; nothing else."""
    if response.status_code < 500:
        return None
    detail = response.json().get("detail", "") if response.status_code == 503 else ""
    if not detail.startswith(UNAVAILABLE):
        raise AssertionError(f"server error {response.status_code}: {response.text[:300]}")
    return None


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
            checks: dict[str, Any] = {
                "excluded_checks": [not_a_server_error],
                "additional_checks": [only_the_documented_503],
            }
            case.call_and_validate(headers=AUTH, **checks)  # every other check
            case.call_and_validate(**checks)

        check()
