async def test_healthz(server):
    status, body = await server.call("GET", f"{server.url}/healthz", role=None)
    assert status == 200 and body["status"] == "ok"
