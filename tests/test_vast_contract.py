"""Contract: what the STAND-IN answers validates against Vast's OpenAPI files, so it cannot drift from Vast's docs.

The files are copies of Vast's published OpenAPI documents (``tests/vast_openapi/``,
copied from the project's reference set; tests read nothing outside the
repository). The stand-in is driven through the official SDK, with its realism
switches on and off, and every answer it gave on a documented route and status
is validated with jsonschema against the document's response schema.

Two readings of the documents, said here once:

* OpenAPI 3.0's ``nullable: true`` becomes JSON Schema's ``"null"`` type.
* ``/route/``'s two answers ("Worker Available", "No Worker Available") are
  ``oneOf`` branches that both accept any object (no required fields), so a
  literal ``oneOf`` rejects every answer; they are read as ``anyOf``, and each
  answer is also checked against the branch it claims (a ``url`` means a worker).
* ``/get_endpoint_workers/`` documents ``{"workers": [...]}`` or a string, while
  the SDK (vastai 1.9.1) reads a plain list: the stand-in's list answers are
  validated row by row against the documented row schema.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Iterator

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import vastnb
from vastnb.backends.vast import VastBackend
from tests.conftest import wait_for
from tests.vast_standin import Realism, VastStandIn, WorkerLauncher

pytestmark = pytest.mark.timeout(240)
IMAGE = "vastai/base-image:@vastai-automatic-tag"
HERE = os.path.join(os.path.dirname(__file__), "vast_openapi")

# stand-in route -> (OpenAPI file, documented path, method)
DOCUMENTED = {
    ("POST", "/route/"): ("api-route.yaml", "/route/", "post"),
    ("POST", "/get_endpoint_workers/"): ("api-get_endpoint_workers.yaml", "/get_endpoint_workers/", "post"),
    ("POST", "/get_endpoint_logs/"): ("api-get_endpoint_logs.yaml", "/get_endpoint_logs/", "post"),
    ("GET", "/api/v0/deployment/{id}/"): ("api-show_deployment.yaml", "/api/v0/deployment/{id}/", "get"),
    ("GET", "/api/v0/deployments/"): ("api-show_deployments.yaml", "/api/v0/deployments/", "get"),
    ("GET", "/api/v0/deployments"): ("api-show_deployments.yaml", "/api/v0/deployments/", "get"),
}


def _json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema: ``nullable`` as a "null" type, ``oneOf`` as ``anyOf`` (see above)."""
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "oneOf" in out:
        out["anyOf"] = out.pop("oneOf")
    return out


def _validator(filename: str, path: str, method: str, status: int) -> jsonschema.protocols.Validator | None:
    with open(os.path.join(HERE, filename)) as fh:
        doc = _json_schema(yaml.safe_load(fh))
    response = doc["paths"][path][method]["responses"].get(str(status))
    if response is None:
        return None
    pointer = "/".join(["#", "paths", path.replace("~", "~0").replace("/", "~1"), method, "responses", str(status),
                        "content", "application~1json", "schema"])
    registry = Registry().with_resource("doc", Resource.from_contents(doc, default_specification=DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": "doc" + pointer}, registry=registry)


def _row_validator() -> jsonschema.protocols.Validator:
    with open(os.path.join(HERE, "api-get_endpoint_workers.yaml")) as fh:
        doc = _json_schema(yaml.safe_load(fh))
    schema = doc["paths"]["/get_endpoint_workers/"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    rows = next(branch for branch in schema["anyOf"] if branch.get("type") == "object")
    return jsonschema.Draft202012Validator(rows["properties"]["workers"]["items"])


def _route_branch(title: str) -> jsonschema.protocols.Validator:
    with open(os.path.join(HERE, "api-route.yaml")) as fh:
        doc = _json_schema(yaml.safe_load(fh))
    schema = doc["paths"]["/route/"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator(copy.deepcopy(next(b for b in schema["anyOf"] if b["title"] == title)))


def validate_answers(answers: list[tuple[str, str, int, Any]]) -> set[tuple[str, str]]:
    """Validate each documented answer; the (method, route) pairs that were checked."""
    checked: set[tuple[str, str]] = set()
    rows = _row_validator()
    for method, route, status, body in answers:
        where = DOCUMENTED.get((method, route))
        if where is None:
            continue
        validator = _validator(*where, status)
        if validator is None:
            continue  # a status the document does not describe (e.g. the 502s and 429s of the realism switches)
        if route == "/get_endpoint_workers/" and isinstance(body, list):
            for row in body:
                rows.validate(row)
        else:
            validator.validate(body)
        if route == "/route/" and status == 200:
            _route_branch("Worker Available" if "url" in body else "No Worker Available").validate(body)
            assert ("url" in body) != ("status" in body), body
        checked.add((method, route))
    return checked


@pytest.fixture(scope="module")
def standin() -> Iterator[VastStandIn]:
    with VastStandIn() as s:
        yield s


@pytest.fixture(scope="module")
def launcher(standin: VastStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerLauncher]:
    lw = WorkerLauncher(standin, str(tmp_path_factory.mktemp("workers")))
    yield lw
    lw.stop()


def test_the_standins_answers_validate_against_vasts_openapi_files(standin: VastStandIn,
                                                                   launcher: WorkerLauncher) -> None:
    launcher.enable("contract")
    real = Realism(inactive_workers=1)
    standin.realism["contract"] = real
    backend = VastBackend(**standin.backend_options())
    app = vastnb.Deployment("contract", backend=backend)
    app.image(IMAGE, storage=16)

    @app.remote(benchmark_dataset=[{"x": 1}])
    async def f(x):  # type: ignore[no-untyped-def]
        return x

    try:
        app.ensure_ready()  # /route/ waiting, then ready
        assert f.call(3) == 3
        for shape, fieldless in (("object", False), ("object", True), ("list", True), ("error", False)):
            real.workers_shape, real.fieldless_rows = shape, fieldless
            seen = len(standin.responses)
            assert wait_for(lambda: any(r == "/get_endpoint_workers/" for _, r, _, _ in standin.responses[seen:]))
        real.workers_shape, real.fieldless_rows = "list", False
        standin.log_lines[:] = ["a log line"]
        assert app.logs()
        vast = backend.sdk.vast()  # type: ignore[union-attr]  # the SDK's synchronous client, as a user's script has it
        assert [d["name"] for d in vast.show_deployments()].count("contract") == 1
        assert vast.show_deployment(backend.deployment_id)["name"] == "contract"
        managed = backend.sdk.managed  # type: ignore[union-attr]
        assert backend._thread.run(managed.get(), 10).name == "contract"  # type: ignore[union-attr]
    finally:
        app.shutdown()
        standin.realism.pop("contract", None)
    checked = validate_answers(standin.responses)
    assert {("POST", "/route/"), ("POST", "/get_endpoint_workers/"), ("POST", "/get_endpoint_logs/"),
            ("GET", "/api/v0/deployment/{id}/")} <= checked
    assert checked & {("GET", "/api/v0/deployments/"), ("GET", "/api/v0/deployments")}
    shapes = [type(b).__name__ for m, r, s, b in standin.responses if r == "/get_endpoint_workers/"]
    assert {"list", "dict", "str"} <= set(shapes)


def test_the_validation_catches_a_drifted_answer() -> None:
    """The check can fail: the stand-in's old "waiting" answer (a breakdown object) is not the documented string."""
    drifted = [("POST", "/route/", 200, {"endpoint": "e", "status": {"ready_workers": 0, "loading_workers": 1}})]
    with pytest.raises(jsonschema.ValidationError):
        validate_answers(drifted)
    with pytest.raises(jsonschema.ValidationError):  # a worker row whose id is not an integer
        validate_answers([("POST", "/get_endpoint_workers/", 200, {"workers": [{"id": "w1", "status": "IDLE"}]})])
    assert validate_answers([("POST", "/route/", 200, {"endpoint": "e", "status": "Stopped"})]) == {("POST", "/route/")}
