"""The error envelope for every kind of bad input; never a 500, never a traceback."""

import io

import pytest


def envelope(body):
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}
    assert "Traceback" not in body["error"]["message"]
    return body["error"]


async def test_malformed_json(server):
    status, body = await server.call("POST", "/operators", data=b"{nope")
    assert status == 400 and envelope(body)["code"] == "malformed_json"


async def test_unknown_route_and_method(server):
    status, body = await server.call("GET", "/nothing-here")
    assert status == 404 and envelope(body)["code"] == "not_found"
    status, body = await server.call("PUT", "/me")
    assert status == 405 and envelope(body)["code"] == "method_not_allowed"


async def test_invalid_field_is_named(server):
    status, body = await server.call("POST", "/enrollment-tokens", json={"ttl_seconds": "soon"})
    err = envelope(body)
    assert status == 400 and err["details"]["fields"][0]["field"] == "ttl_seconds"
    status, body = await server.call("POST", "/enrollment-tokens", json={"surprise": 1})
    assert status == 400 and envelope(body)["details"]["fields"][0]["field"] == "surprise"


async def test_body_too_large(server):
    status, body = await server.call("POST", "/operators", data=io.BytesIO(b"x" * (2 * 1024 * 1024)))
    assert status == 413 and envelope(body)["code"] == "payload_too_large"


@pytest.mark.parametrize("query", ["limit=abc", "limit=-1", "state=bogus", "kind=nope"])
async def test_bad_query(server, query):
    status, body = await server.call("GET", f"/jobs?{query}")
    assert status == 400 and envelope(body)["details"]["field"] in query


async def test_missing_resource(server):
    status, body = await server.call("GET", "/hosts/01NOPE")
    assert status == 404 and envelope(body)["details"] == {"resource": "host", "id": "01NOPE"}


async def test_json_that_is_not_an_object(server):
    for raw in (b"[]", b"42", b'"text"', b"null"):
        status, body = await server.call("POST", "/enrollment-tokens", data=raw)
        assert status == 400, raw
        envelope(body)
