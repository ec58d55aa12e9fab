"""Schema-driven fuzzing with schemathesis: every operation of /openapi.json, auth on, in process. No 5xx, no
crash, and every response (errors included) conforms to the schema: its status is documented, its body and
content type match. `make fuzz` runs many more examples.

The schemas describe shapes, not every semantic rule (a `data` object must hold one of text/texts/image/...), so
a schema-valid request may rightly get a 4xx: schemathesis's positive/negative data-acceptance checks are off."""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from starlette.testclient import TestClient

from ml_service.app import create_app

from .helpers import wait_ready

TOKEN = "fuzz-token"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
SKIP = ("/unload",)  # unloading has its own tests; here the models stay loaded for the rest
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance]


def test_every_operation_answers_within_its_schema(onnx_repo, settings_for):  # type: ignore[no-untyped-def]
    app = create_app(settings_for(onnx_repo.root, secret=TOKEN, request_timeout_s=5.0))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client:
        wait_ready(client)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=headers)
        operations = [r.ok() for r in schema.get_all_operations()]
        assert len(operations) == len(app.routes)  # every route of the table
        checked = 0
        for op in operations:
            if op.path.endswith(SKIP):
                continue

            @given(case=op.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def run(case: schemathesis.Case) -> None:
                response = case.call(headers=headers)
                assert response.status_code < 500 or response.status_code in (503, 504), (
                    case.operation.label, response.status_code, response.text[:300])
                case.validate_response(response, checks=CHECKS)

            run()
            checked += 1
    assert checked == len(app.routes) - 2  # all but the two unloads
