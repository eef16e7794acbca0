"""What a viewer can learn about repository passwords (item 3) and who can read the
server's database files (item 13)."""

from __future__ import annotations

import hashlib
import os
import stat

from tests.conftest import sqlite_only
from tests.security.helpers import custom_server

SEASONS = ["Spring", "Summer", "Autumn", "Fall", "Winter"]


def guesses() -> list[str]:
    return [f"{s}{y}{x}" for s in SEASONS for y in range(2000, 2031) for x in ("", "!", "?", "1")]


async def test_viewer_cannot_test_password_guesses_against_the_fingerprint(server):
    host_id, _ = await server.enroll()
    status, _ = await server.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                                  json={"url": "/srv/restic/web-1", "password": "Winter2025!"})
    assert status == 200
    status, repo = await server.call("GET", f"/hosts/{host_id}/repo", role="viewer")
    assert status == 200
    fp = repo["key_fingerprint"]
    unkeyed = {hashlib.sha256(b"rm-fp:" + g.encode()).hexdigest()[:16] for g in guesses()}
    plain = {hashlib.sha256(g.encode()).hexdigest()[:16] for g in guesses()}
    assert "Winter2025!" in guesses() and fp not in unkeyed | plain

    # Still a fingerprint: the same password gives the same value on this server.
    other_id, _ = await server.enroll("web-2")
    await server.call("PUT", f"/hosts/{other_id}/repo", role="operator",
                      json={"url": "/srv/restic/web-2", "password": "Winter2025!"})
    _, other = await server.call("GET", f"/hosts/{other_id}/repo", role="viewer")
    assert other["key_fingerprint"] == fp


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@sqlite_only
async def test_database_files_are_private_whatever_made_the_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)  # made by a package or an admin, not by the server
    os.chmod(data, 0o755)
    old = os.umask(0o022)
    try:
        async with custom_server(tmp_path) as srv:
            await srv.enroll()  # some writes, so the WAL exists
            files = sorted(p for p in data.iterdir() if p.name.startswith("server.db"))
            assert {p.name for p in files} >= {"server.db", "server.db-wal", "server.db-shm"}
            assert {p.name: oct(mode(p)) for p in files} == {p.name: oct(0o600) for p in files}
    finally:
        os.umask(old)


async def test_fingerprints_from_before_the_fix_are_rekeyed_at_start(tmp_path):
    import aiohttp

    from rm_server.keys import CONFIG
    from rm_server.store import Store
    from tests.conftest import ADMIN_PASSWORD, Server, start_server

    async with custom_server(tmp_path) as srv:
        host_id, _ = await srv.enroll()
        await srv.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                       json={"url": "/srv/restic/web-1", "password": "Winter2025!"})
        _, repo = await srv.call("GET", f"/hosts/{host_id}/repo", role="viewer")
        keyed = repo["key_fingerprint"]
        database = srv.app[CONFIG].database
    old = hashlib.sha256(b"rm-fp:Winter2025!").hexdigest()[:16]
    store = await Store.open(database)
    try:  # what a database written before the fix holds
        async with store.db.write() as db:
            await db.execute("UPDATE repo_credentials SET key_fingerprint = ?", (old,))
    finally:
        await store.close()
    runner, url, app = await start_server(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            srv = Server(url, app, http, tmp_path / "data", None)
            srv.tokens["admin"] = await srv.login("admin", ADMIN_PASSWORD)
            _, repo = await srv.call("GET", f"/hosts/{host_id}/repo")
            assert repo["key_fingerprint"] == keyed != old
    finally:
        await runner.cleanup()
