"""The API document is the contract (issue 20): schemathesis, with every check and all four
phases (examples, coverage, fuzzing, stateful), a fixed seed and a bounded number of cases,
runs against a real server on port 0 and finds nothing: no request the document calls valid
is refused, none it calls invalid is taken, every status, header and body is documented,
and an undeclared method answers 405 with Allow.

Which routes it covers comes from the real router and the served document, not a list: a
route someone adds is fuzzed on the next run."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rm_server.api.doc import route_doc
from rm_server.openapi import real_routes
from tests.conftest import one_backend

pytest.importorskip("schemathesis", reason="a test dependency: pip install -e '.[test]'")

SEED = 20
FUZZ_CASES = 5  # per operation, in fuzzing and stateful; coverage and examples are what they are
# The coverage phase sends every value of an enum: a body taking one of ~600 time zones would
# cost ~600 requests a route. Those routes are still fuzzed, and their other phases run.
BIG_ENUM = 100
TIMEOUT = 300  # the run takes ~60 s on two busy cores; this only stops a hung one
# One worker: on Python 3.11.7 hypothesis' ast.parse in two threads at once can raise
# "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905).


def excluded_paths(app) -> list[str]:
    """Logout ends the session the run signs in with; a WebSocket route speaks frames, not
    request/response (tests/server/test_agent_ws.py and test_events.py drive those)."""
    paths = {"/api/v1/auth/logout"}
    paths |= {path for _, path, handler in real_routes(app) if (doc := route_doc(handler)) and doc.websocket}
    return sorted(paths)


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        return ({node["$ref"]} if isinstance(node.get("$ref"), str) else set()).union(*map(_refs, node.values()))
    if isinstance(node, list):
        return set().union(*map(_refs, node))
    return set()


def big_enum_operations(doc: dict) -> list[str]:
    """operationIds whose request body reaches (through $refs) an enum of more than BIG_ENUM values."""
    schemas = doc["components"]["schemas"]

    def reaches(ref: str, seen: set[str]) -> bool:
        name = ref.rsplit("/", 1)[-1]
        if name in seen or name not in schemas:
            return False
        seen.add(name)
        schema = schemas[name]
        return len(schema.get("enum", [])) > BIG_ENUM or any(reaches(r, seen) for r in _refs(schema))

    found = []
    for ops in doc["paths"].values():
        for op in ops.values():
            body = op.get("requestBody", {})
            if any(reaches(ref, set()) for ref in _refs(body)):
                found.append(op["operationId"])
    return sorted(found)


def config(doc: dict, ids: dict[str, str]) -> str:
    """schemathesis.toml: the token from the environment (never argv), real ids for the
    host-scoped routes (random ones only reach the 404), 413 counted as a rejection (a body
    over the server's 1 MiB, documented on every route with a body), and a documented 502,
    503 or 504 counted as an answer, not a server error."""
    lines = ['headers = { Authorization = "Bearer ${RM_CONTRACT_TOKEN}" }', "",
             "[checks.negative_data_rejection]",
             "expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]", ""]
    pins = [(r"^/api/v1/hosts/\\{id\\}", "id", ids["host"]),
            (r"^/api/v1/hosts/\\{id\\}/source-groups/\\{sid\\}", "sid", ids["group"]),
            (r"^/api/v1/hosts/\\{id\\}/schedules/\\{sid\\}", "sid", ids["schedule"]),
            (r"^/api/v1/jobs/\\{id\\}", "id", ids["job"])]
    for regex, name, value in pins:
        lines += ["[[operations]]", f'include-path-regex = "{regex}"', f'parameters = {{ "path.{name}" = "{value}" }}', ""]
    for op_id in big_enum_operations(doc):
        lines += ["[[operations]]", f'include-operation-id = "{op_id}"', "phases.coverage.enabled = false", ""]
    for op_id, codes in gateway_answers(doc).items():
        allowed = ", ".join(['"2xx"', '"3xx"', '"4xx"', *map(str, codes)])
        lines += ["[[operations]]", f'include-operation-id = "{op_id}"',
                  f"checks.not_a_server_error.expected-statuses = [{allowed}]", ""]
    return "\n".join(lines)


def gateway_answers(doc: dict) -> dict[str, list[int]]:
    """The 5xx an operation documents: another system's failure passed on (502 a channel's
    service or restic refused, 503 the database, 504 an agent too slow), never a 500."""
    found = {}
    for ops in doc["paths"].values():
        for op in ops.values():
            codes = sorted(int(c) for c in op["responses"] if c.startswith("5"))
            assert 500 not in codes, f"{op['operationId']} documents a 500"
            if codes:
                found[op["operationId"]] = codes
    return found


@one_backend
async def test_schemathesis_finds_nothing(server, tmp_path: Path):
    host_id, _ = await server.enroll()
    _, group = await server.call("POST", f"/hosts/{host_id}/source-groups", json={"name": "etc", "includes": ["/etc"]})
    _, schedule = await server.call("POST", f"/hosts/{host_id}/schedules",
                                    json={"name": "nightly", "cron": "0 3 * * *", "source_group_ids": [group["id"]]})
    _, job = await server.call("POST", f"/hosts/{host_id}/jobs", json={"kind": "check"})
    status, doc = await server.call("GET", "/openapi.json")
    assert status == 200, doc
    (tmp_path / "openapi.json").write_text(json.dumps(doc))
    ids = {"host": host_id, "group": group["id"], "schedule": schedule["id"], "job": job["id"]}
    (tmp_path / "schemathesis.toml").write_text(config(doc, ids))
    argv = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(tmp_path / "schemathesis.toml"), "run",
            str(tmp_path / "openapi.json"), "--url", server.url, "--checks", "all", "--seed", str(SEED),
            "--max-examples", str(FUZZ_CASES), "--workers", "1", "--generation-database", "none", "--no-color"]
    for path in excluded_paths(server.app):
        argv += ["--exclude-path", path]
    env = {**os.environ, "RM_CONTRACT_TOKEN": server.tokens["admin"]}
    started = time.monotonic()
    # The server runs in this test's event loop: await the run, never block on it.
    proc = await asyncio.create_subprocess_exec(*argv, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    print(text[-3000:], f"\nschemathesis took {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, f"schemathesis found mismatches between the server and its document:\n{text[-20000:]}"
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅  {phase}" in text, f"the {phase} phase did not run and pass:\n{text[-3000:]}"
