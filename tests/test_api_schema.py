"""The OpenAPI document is the contract: schemathesis sends generated requests to a running
daemon and checks every answer against it (no 5xx, documented codes, types and bodies)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api_harness import ADMIN_TOKEN, LiveDaemon

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    config = {
        "version": 1,
        "state": {"type": "sqlite", "path": "state.db"},
        "engine": {"workers": 0},
        "server": {"admin_token": "${ADMIN_TOKEN}"},
        "checks": {
            "job": {"probe": "heartbeat", "expect_every": {"every": "1h"}},
            "db": {"probe": "tcp", "host": "127.0.0.1", "port": 9, "schedule": {"every": "1d"}},
        },
        "notifiers": {"console": {"type": "log"}},
        "routes": [{"match": {}, "notify": ["console"]}],
    }
    with LiveDaemon(
        tmp_path_factory.mktemp("schema"), config, {"ADMIN_TOKEN": ADMIN_TOKEN}
    ) as daemon:
        yield daemon


@pytest.fixture
def api_schema(live):
    return schemathesis.openapi.from_url(live.url + "/openapi.json")


def test_the_document_is_openapi_3_1(live):
    document = live.get("/openapi.json", token=None).json()
    assert document["openapi"] == "3.1.0"
    for path in (
        "/health",
        "/ready",
        "/api/status",
        "/api/alerts",
        "/api/heartbeat/{check}",
        "/api/events",
        "/api/reload",
        "/api/audit",
        "/api/alerts/silences",
        "/api/alerts/{alert_id}/ack",
    ):
        assert path in document["paths"], path


def _exercise(schema, headers: dict[str, str], examples: int) -> int:
    """Send generated requests for every operation; return how many operations ran."""
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        run()
        ran += 1
    return ran


def test_every_json_route_keeps_its_contract(api_schema):
    assert _exercise(api_schema, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, 15) >= 14


def test_every_json_route_keeps_its_contract_without_a_token(api_schema):
    assert _exercise(api_schema, {}, 3) >= 14
