async def test_healthz(server):
    status, body = await server.call("GET", f"{server.url}/healthz", role=None)
    assert status == 200 and body["status"] == "ok"


async def test_healthz_says_503_when_the_database_cannot_be_read_and_recovers_with_it(server):
    db = server.store.db
    server.store.ping_fresh = 0  # every probe reads
    real = db.fetchall

    def unreadable(conn) -> None:
        raise RuntimeError("database unavailable")

    async def broken(sql, params=(), lane=None, **kw):  # a read that fails on its lane's thread
        return await db.on_lane(db.least_busy_reader(), unreadable)

    db.fetchall = broken
    try:
        status, body = await server.call("GET", f"{server.url}/healthz", role=None)
        assert status == 503 and body["error"]["code"] == "database_unavailable"
    finally:
        db.fetchall = real
    status, body = await server.call("GET", f"{server.url}/healthz", role=None)
    assert status == 200 and body["status"] == "ok"
