"""`farmhand api` against its own OpenAPI document, by schemathesis: generated requests (valid
and invalid ones) to every route find no server error, no status, content type or body outside
the document, and no route that answers without the token.

Behind the API is a Deadline farm whose Web Service is a STAND-IN
(tests/standins/deadline_web_service.py) holding a few jobs, so the job routes answer with
real job summaries; the farm share is never reached (no generated scene exists)."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from farmhand.jobs import api, local_api
from farmhand.jobs.client import HubAccess
from farmhand.jobs.deadline import DeadlineFarm
from farmhand.jobs.transfer import ShareAccess
from standins import deadline_web_service, http_api

SECRET = "p" * 43
MOUNT = "/mnt/farmhand/farm"
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
    checks.ignored_auth,
]
schema = schemathesis.openapi.from_dict(local_api.openapi())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    share = tmp_path_factory.mktemp("share")
    web = deadline_web_service.StandinWebService(MOUNT, share)
    (share / "shot.blend").write_bytes(b"BLENDER-v300")
    for frames in ("1-4", "1-2"):
        status, _ = web.handle(
            "POST",
            "/api/jobs",
            {"JobInfo": {"Plugin": "Blender", "Name": "shot", "Frames": frames},
             "PluginInfo": {"SceneFile": f"{MOUNT}/shot.blend", "OutputFile": f"{MOUNT}/r/####"}},
        )  # fmt: skip
        assert status == 200
    web.render(next(iter(web.jobs)))
    deadline = http_api.serve(web.handle)
    nowhere = share / "absent"  # a Deadline farm's commands never use the hub's job service
    smb = ShareAccess("127.0.0.1", "nobody", "unused")
    farm = api.Farm(
        hub=HubAccess("127.0.0.1", nowhere, nowhere),
        share=smb,
        manager=DeadlineFarm(f"http://127.0.0.1:{deadline.server_address[1]}", smb, MOUNT),
    )
    server = local_api.make_server(
        local_api.JobApi(lambda: contextlib.nullcontext(farm)), SECRET, 0
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        deadline.shutdown()
        deadline.server_close()


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_route_keeps_to_its_openapi_document(case: schemathesis.Case, served: str) -> None:
    case.call_and_validate(
        base_url=served, headers={"Authorization": f"Bearer {SECRET}"}, checks=CHECKS
    )


def test_the_stand_in_farm_behind_it_holds_jobs(served: str) -> None:
    """The property run above sees real summaries, not an empty farm."""
    request = urllib.request.Request(served + "/jobs")  # noqa: S310 - loopback
    request.add_header("Authorization", f"Bearer {SECRET}")
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        listed = json.loads(answer.read())["data"]
    assert sorted((j["state"], j["frames"]) for j in listed) == [("done", 4), ("queued", 2)]
