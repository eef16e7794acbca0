async def test_healthz(server):
    status, body = await server.call("GET", f"{server.url}/healthz", role=None)
    assert status == 200 and body["status"] == "ok"


async def test_healthz_says_503_when_the_database_cannot_be_read_and_recovers_with_it(server):
    db = server.store.db
    readers = list(db._readers)
    server.store.ping_fresh = 0  # every probe reads
    for i in range(1, len(readers)):  # operators' readers gone: the database cannot be read
        db._readers[i] = readers[0]
    await readers[0].close()
    try:
        status, body = await server.call("GET", f"{server.url}/healthz", role=None)
        assert status == 503 and body["error"]["code"] == "database_unavailable"
    finally:
        for i in range(1, len(readers)):
            db._readers[i] = readers[i]
        db._readers[0] = readers[1]  # keeps close() happy: the closed one is not closed twice
    status, body = await server.call("GET", f"{server.url}/healthz", role=None)
    assert status == 200 and body["status"] == "ok"
