import sqlite3

import pytest

from rm_server.store import SYSTEM, SchemaTooNew, Store
from rm_server.store.db import migrations


async def test_fresh_database_is_migrated_with_foreign_keys_and_wal(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    try:
        row = await store.db.fetchone("PRAGMA user_version")
        assert row[0] == len(migrations())
        assert (await store.db.fetchone("PRAGMA foreign_keys"))[0] == 1
        assert (await store.db.fetchone("PRAGMA journal_mode"))[0] == "wal"
    finally:
        await store.close()


async def test_reopen_is_a_no_op(tmp_path):
    # A second open migrates nothing: same version, same schema, the data still there.
    seen = []
    for _ in range(2):
        store = await Store.open(tmp_path / "s.db")
        try:
            if not seen:
                await store.settings.set(SYSTEM, "webhook_url", "https://hooks.example/x")
            version = (await store.db.fetchone("PRAGMA user_version"))[0]
            schema = [tuple(r) for r in await store.db.fetchall("SELECT type, name, sql FROM sqlite_master ORDER BY name")]
            seen.append((version, schema, await store.settings.get("webhook_url")))
        finally:
            await store.close()
    assert seen[0][0] == len(migrations()) and len(seen[0][1]) > 10
    assert seen[1] == seen[0]
    assert seen[1][2] == "https://hooks.example/x"


async def test_refuses_newer_database(tmp_path):
    path = tmp_path / "s.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(migrations()) + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew, match="newer"):
        await Store.open(path)


async def test_failed_transaction_rolls_back(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    try:
        with pytest.raises(RuntimeError):
            async with store.db.write() as conn:
                await conn.execute("INSERT INTO settings (key, value) VALUES ('a', '1')")
                raise RuntimeError("boom")
        assert await store.db.fetchone("SELECT * FROM settings") is None
    finally:
        await store.close()


def test_both_backends_have_the_same_numbered_migrations():
    """A number means the same change on SQLite and on PostgreSQL: every migration has its twin."""
    sqlite = [name for _, name, _ in migrations("sqlite")]
    postgres = [name for _, name, _ in migrations("postgresql")]
    assert sqlite == postgres, "add the other backend's twin (rm_server/store/migrations[/postgresql]/)"
