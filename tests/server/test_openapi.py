"""The API reference against the real server: every route documented, every documented route
real, the served document whole, its examples and replies true, docs/api.md current."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from rm_core.api import RepoPutResponse
from rm_core.bounds import Name, showable_pattern
from rm_server.api.common import requires
from rm_server.api.doc import Listing, documented, route_doc
from rm_server.app import create_app
from rm_server.config import ServerConfig
from rm_server.openapi import build, effective_role, missing_docs, real_routes
from rm_server.openapi_md import COMMAND, current
from tests.server.server_helpers import online_host

ROOT = Path(__file__).resolve().parents[2]
IDS = {"id": "nohost", "sid": "noitem", "name": "nopolicy"}


def _fill(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: IDS.get(m.group(1), "x"), path)


async def test_every_route_is_documented(server):
    missing = missing_docs(server.app)
    assert not missing, "\n".join(missing)


async def test_served_document_lists_exactly_the_real_routes_with_their_roles(server):
    status, doc = await server.call("GET", "/openapi.json", role="viewer")
    assert status == 200, doc
    assert doc["openapi"].startswith("3.1")
    served = {(m.upper(), path): op for path, ops in doc["paths"].items() for m, op in ops.items()}
    real = {(m, path): h for m, path, h in real_routes(server.app)}
    assert not set(served) - set(real), f"documented but not served: {sorted(set(served) - set(real))}"
    assert not set(real) - set(served), f"served but not documented: {sorted(set(real) - set(served))}"
    for (method, path), handler in real.items():
        assert served[(method, path)]["x-required-role"] == str(effective_role(path, handler)), (method, path)
        public = served[(method, path)].get("security") == []
        assert public == (str(effective_role(path, handler)) == "public"), (method, path)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_document_is_whole():
    doc = build(create_app(ServerConfig(data_dir=Path("/nonexistent"))))
    for ref in _refs(doc):
        target: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict) and part in target, f"{ref} does not resolve"
            target = target[part]
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), "operationIds repeat"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
            assert op["responses"] and op["summary"], (method, path)
            if "x-required-role" in op and op["x-required-role"] not in ("public",):
                assert "401" in op["responses"], (method, path)


def test_every_example_body_is_accepted_by_its_model():
    checked = 0
    for method, path, handler in real_routes(create_app(ServerConfig(data_dir=Path("/nonexistent")))):
        doc = route_doc(handler)
        if doc is None:
            continue
        assert not doc.examples or doc.body is not None, f"{method} {path}: examples without a body model"
        for name, example in doc.examples.items():
            doc.body.model_validate(example)  # a ValidationError names the route in the traceback
            checked += 1
    assert checked >= 15


def _check_reply(shape: Any, body: Any, where: str) -> None:
    if isinstance(shape, Listing):
        assert isinstance(body, dict) and isinstance(body.get(shape.key), list), (where, body)
        for item in body[shape.key]:
            shape.model.model_validate(item)
    elif isinstance(shape, type) and issubclass(shape, BaseModel):
        shape.model_validate(body)


async def test_documented_replies_are_what_the_server_sends(server):
    """Every GET without a path id, with data in place, answers what its reference says."""
    await server.enroll()
    checked = 0
    for method, path, handler in real_routes(server.app):
        doc = route_doc(handler)
        if doc is None or method != "GET" or "{" in path or doc.websocket or not path.startswith("/api/"):
            continue
        status, body = await server.call("GET", server.url + path)
        assert status == doc.status, (path, body)
        _check_reply(doc.reply, body, path)
        checked += 1
    assert checked >= 8


async def test_put_repo_takes_the_documented_body(server):
    host_id, _ = await server.enroll()
    handler = next(h for m, p, h in real_routes(server.app) if (m, p) == ("PUT", "/api/v1/hosts/{id}/repo"))
    for example in route_doc(handler).examples.values():
        status, body = await server.call("PUT", f"/hosts/{host_id}/repo", role="operator", json=example)
        assert status == 200, body
        reply = RepoPutResponse.model_validate(body)
        assert (reply.password is not None) == bool(example.get("generate_password"))


async def test_documented_query_bounds_are_the_enforced_ones(server):
    """Past a documented maximum or outside a documented enum: 400 naming the parameter;
    at the maximum: accepted. So the reference cannot promise bounds the server does not keep."""
    checked = 0
    for method, path, handler in real_routes(server.app):
        doc = route_doc(handler)
        for q in doc.query if doc else ():
            url = server.url + _fill(path)
            bad, good = None, None
            if q.schema.get("type") == "integer" and "maximum" in q.schema:
                bad, good = q.schema["maximum"] + 1, q.schema["maximum"]
            elif "enum" in q.schema:
                bad, good = "no-such-value", q.schema["enum"][0]
            if bad is None:
                continue
            # required parameters get a well-formed value, so only the one under test is wrong
            given = {r.name: "0123abcd" for r in doc.query if r.required and r.name != q.name}
            status, body = await server.call(method, url, params={**given, q.name: str(bad)})
            assert status == 400 and body["error"]["details"]["field"] == q.name, (path, q.name, body)
            status, body = await server.call(method, url, params={**given, q.name: str(good)})
            assert status != 400, (path, q.name, body)
            checked += 1
    assert checked >= 8


def test_a_route_without_reference_is_named_with_the_fix():
    app = create_app(ServerConfig(data_dir=Path("/nonexistent")))

    @requires("public")
    async def brand_new(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/v1/brand-new", brand_new)
    (line,) = [m for m in missing_docs(app) if "brand-new" in m]
    assert "GET /api/v1/brand-new" in line and "brand_new" in line
    assert "@documented(" in line and "rm_server.api.doc" in line and COMMAND in line
    assert ("GET", "/api/v1/brand-new") not in {(m, p) for p, ops in build(app)["paths"].items() for m in ops}

    documented("Brand new", reply={"type": "object"})(brand_new)
    assert not [m for m in missing_docs(app) if "brand-new" in m]
    assert "get" in build(app)["paths"]["/api/v1/brand-new"]


def test_docs_api_md_is_current():
    path = ROOT / "docs" / "api.md"
    assert path.read_text() == current(), f"docs/api.md is stale: run {COMMAND} and commit the result"


def test_docs_api_md_gives_exact_bodies():
    text = (ROOT / "docs" / "api.md").read_text()
    assert "**Body** [RepoBody](#repobody): `{url, password?, generate_password?, rest_user?, rest_password?}`" in text
    assert "`restore` needs `snapshot_id`" in text


async def test_restore_params_are_what_docs_protocol_md_says(server):
    """docs/protocol.md: restore `{snapshot_id, target, paths?}` — the REST body without `kind`,
    unset and default fields left out — plus any of the per-job caps and timeout."""
    host_id, agent = await online_host(server)
    cases = [
        ({"kind": "restore", "snapshot_id": "latest", "target": "/srv/r"}, {"snapshot_id": "latest", "target": "/srv/r"}),
        ({"kind": "restore", "snapshot_id": "abcdef12", "target": "/srv/r", "paths": ["/etc"], "remove_all": False,
          "limit_download_kbps": 512, "timeout_seconds": 60},
         {"snapshot_id": "abcdef12", "target": "/srv/r", "paths": ["/etc"], "limit_download_kbps": 512,
          "timeout_seconds": 60}),
    ]
    for body, params in cases:
        status, created = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator", json=body)
        assert status == 202, created
        run = await agent.expect("command.run")
        assert run.payload.params == params
    assert "restore\n`{snapshot_id, target, paths?}`" in (ROOT / "docs" / "protocol.md").read_text()


METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"}


async def test_undeclared_methods_answer_405_with_allow(server):
    """Every path of the real router, every method it does not take: 405 in the envelope,
    with Allow naming exactly the methods it does take (aiohttp adds HEAD to a GET)."""
    declared: dict[str, set[str]] = {}
    for method, path, _ in real_routes(server.app):
        declared.setdefault(path, set()).add(method)
    checked = 0
    for path, methods in declared.items():
        allowed = methods | ({"HEAD"} if "GET" in methods else set())
        for method in sorted(METHODS - methods):
            status, body = await server.call(method, server.url + _fill(path), role=None)
            assert status == 405, (method, path, status, body)
            assert body["error"]["code"] == "method_not_allowed" and method in body["error"]["message"], body
            async with server.http.request(method, server.url + _fill(path)) as resp:
                assert set(resp.headers["Allow"].split(", ")) == allowed, (method, path, resp.headers["Allow"])
            checked += 1
    assert checked >= 200


def test_a_body_is_required_exactly_when_its_model_needs_a_field():
    doc = build(create_app(ServerConfig(data_dir=Path("/nonexistent"))))
    seen = set()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if "requestBody" in op:
                seen.add(op["requestBody"]["required"])
    assert seen == {True, False}
    maintenance = doc["paths"]["/api/v1/hosts/{id}/maintenance"]["put"]["requestBody"]
    operator = doc["paths"]["/api/v1/operators"]["post"]["requestBody"]
    assert maintenance["required"] is False and operator["required"] is True


def test_the_name_pattern_says_what_the_name_check_keeps():
    """rm_core's Name: the pattern in the document and the validator agree on every character
    (surrogates aside: JSON text cannot carry a lone one)."""
    pattern = re.compile(showable_pattern())
    adapter = TypeAdapter(Name)
    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    stated = [ch for ch in chars if pattern.fullmatch(ch)]
    adapter.validate_python("".join(stated))  # the validator keeps every character the pattern admits
    refused = [ch for ch in chars if not pattern.fullmatch(ch)]
    for ch in refused:  # and refuses every one it does not
        with pytest.raises(ValidationError):
            adapter.validate_python("a" + ch + "b")
    assert 200 < len(refused) < 400
