"""The second copy end to end: a real agent, the real server, real restic and two repositories.
PUT the copy repository -> it is initialised; a backup of a copy-enabled group -> a copy job ->
the copy holds the snapshot (as `original`) and the host shows no lag; retention and checks of
the copy on demand."""

from __future__ import annotations

import shutil
from pathlib import Path

from rm_core import restic as R
from tests.conftest import Server, wait_for

from .conftest import PASSWORD, restic_cli
from .test_agent_server import enrolled_agent, job_done

COPY_PASSWORD = "the copy's own password"


async def _jobs(server: Server, host_id: str, kind: str) -> list[dict]:
    status, body = await server.call("GET", f"/jobs?host_id={host_id}&kind={kind}")
    assert status == 200, body
    return body["jobs"]


async def _finished(server: Server, host_id: str, kind: str, count: int) -> list[dict] | None:
    jobs = await _jobs(server, host_id, kind)
    done = [j for j in jobs if j["state"] in ("succeeded", "warning", "failed", "cancelled", "lost")]
    return done if len(done) >= count else None


async def test_backup_then_copy_through_the_server(server: Server, tmp_path: Path, repo: Path, source: Path) -> None:
    host_id, run = await enrolled_agent(server, tmp_path, repo)
    copy_repo = tmp_path / "copy"
    try:
        status, body = await server.call("PUT", f"/hosts/{host_id}/repo/copy",
                                         json={"url": str(copy_repo), "password": COPY_PASSWORD})
        assert status == 200, body
        inits = await wait_for(lambda: _finished(server, host_id, "init", 2), 60, "both repositories initialised")
        (init,) = [j for j in inits if j["params"] == {"repo": "copy"}]
        assert init["state"] == "succeeded", init
        assert (copy_repo / "config").is_file()

        status, group = await server.call("POST", f"/hosts/{host_id}/source-groups", json={
            "name": "docs", "includes": [str(source)], "tag": "docs", "retention": {"keep_last": 1},
            "copy": {"enabled": True}})
        assert status == 201, group
        status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        assert status == 202, body
        backup = await wait_for(lambda: job_done(server, body["job"]["id"]), 60, "backup finished")
        assert backup["state"] == "succeeded", backup
        (copy,) = await wait_for(lambda: _finished(server, host_id, "copy", 1), 60, "copy finished")
        assert copy["state"] == "succeeded" and copy["summary"]["copied"] == 1, copy
        assert copy["actor_kind"] == "system" and copy["source_group_id"] == group["id"]

        copied = R.parse_snapshots(restic_cli(str(copy_repo), tmp_path, "snapshots", "--json",
                                              password=COPY_PASSWORD).stdout)
        primary = R.parse_snapshots(restic_cli(str(repo), tmp_path, "snapshots", "--json").stdout)
        assert [s["original"] for s in copied] == [s["id"] for s in primary]

        async def caught_up() -> dict | None:
            _, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
            _, snaps = await server.call("GET", f"/hosts/{host_id}/snapshots?repo=copy", role="viewer")
            ok = host["copy_enabled"] and host["copy_behind_since"] is None and len(snaps["snapshots"]) == 1
            return host if ok else None

        await wait_for(caught_up, 30, "the host's copy is up to date")
        status, info = await server.call("GET", f"/hosts/{host_id}/repo/copy", role="viewer")
        assert status == 200 and info["stats"]["snapshots_count"] == 1, info
        assert COPY_PASSWORD not in str(info)

        # a second backup: the copy is behind until its copy job ran, then caught up again
        status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        await wait_for(lambda: job_done(server, body["job"]["id"]), 60, "second backup")
        await wait_for(lambda: _finished(server, host_id, "copy", 2), 60, "second copy")
        await wait_for(_caught_up(server, host_id, 2), 30, "two snapshots in the copy")

        # retention on the copy alone, then a check of it
        status, body = await server.call("POST", f"/hosts/{host_id}/jobs", json={"kind": "forget", "repo": "copy"})
        assert status == 202, body
        forget = await wait_for(lambda: job_done(server, body["id"]), 60, "forget on the copy")
        assert forget["state"] == "succeeded" and forget["summary"]["groups"]["docs"]["remove"] == 1, forget
        assert len(R.parse_snapshots(restic_cli(str(copy_repo), tmp_path, "snapshots", "--json",
                                                password=COPY_PASSWORD).stdout)) == 1
        assert len(R.parse_snapshots(restic_cli(str(repo), tmp_path, "snapshots", "--json").stdout)) == 2
        status, body = await server.call("POST", f"/hosts/{host_id}/jobs", json={"kind": "check", "repo": "copy"})
        check = await wait_for(lambda: job_done(server, body["id"]), 60, "check of the copy")
        assert check["state"] == "succeeded" and check["summary"]["no_errors"] is True, check
        for j in await _jobs(server, host_id, "copy"):
            assert PASSWORD not in str(j) and COPY_PASSWORD not in str(j)

        # the primary is gone: restore from the copy alone
        shutil.rmtree(repo)
        target = tmp_path / "from-copy"
        status, body = await server.call("POST", f"/hosts/{host_id}/jobs", json={
            "kind": "restore", "repo": "copy", "snapshot_id": "latest", "paths": [str(source)], "target": str(target)})
        assert status == 202, body
        restore = await wait_for(lambda: job_done(server, body["id"]), 60, "restore from the copy")
        assert restore["state"] == "succeeded", restore
        back = target / str(source).lstrip("/")
        for f in ("a.txt", "sub/b.bin"):
            assert (back / f).read_bytes() == (source / f).read_bytes()
    finally:
        await run.close()


def _caught_up(server: Server, host_id: str, count: int):
    async def check() -> bool:
        _, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
        _, snaps = await server.call("GET", f"/hosts/{host_id}/snapshots?repo=copy", role="viewer")
        return host["copy_behind_since"] is None and len(snaps["snapshots"]) == count
    return check
