"""Live queries (rm_agent/queries.py) against real restic 0.14 and 0.18, local and REST.

The runner answers through a `send` callable; here it records the frames, exactly what the
agent would put on its socket."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rm_agent.queries import QueryRunner
from rm_core import queries as q
from rm_core import restic as R
from rm_core.enums import CredentialSlot
from rm_core.ids import new_id
from rm_core.protocol import Payload, Query, QueryError, QueryResult, RepoCredentials

from tests.restic_keys import cheapen

from .conftest import PASSWORD
from .test_restic_versions import Backend, Restic, backend, restic, restic_env  # noqa: F401 (fixtures)

__all__ = ["backend", "restic"]


class Frames:
    def __init__(self) -> None:
        self.sent: list[Payload] = []
        self.changed = asyncio.Event()

    def send(self, payload: Payload) -> bool:
        self.sent.append(payload)
        self.changed.set()
        return True

    async def answer(self, query_id: str, timeout: float = 60) -> tuple[list[dict[str, Any]], dict[str, Any]] | QueryError:
        """All items and the info of one query, or its error."""
        async def done() -> None:
            while not any(getattr(f, "query_id", None) == query_id and (isinstance(f, QueryError) or f.done)
                          for f in self.sent):
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(done(), timeout)
        frames = [f for f in self.sent if getattr(f, "query_id", None) == query_id]
        if isinstance(frames[-1], QueryError):
            return frames[-1]
        assert [f.seq for f in frames] == list(range(len(frames))), "chunks numbered from 0 without a gap"
        assert all(isinstance(f, QueryResult) and not f.done for f in frames[:-1])
        return [i for f in frames for i in f.items], frames[-1].info


def runner_for(tmp_path: Path, restic: Restic, creds: RepoCredentials | None, frames: Frames) -> QueryRunner:
    return QueryRunner(restic_binary=restic.binary, tmp_dir=tmp_path / "agent-tmp", send=frames.send,
                       credentials=lambda slot: creds if slot == CredentialSlot.repo else None,
                       cache_dir=str(tmp_path / "cache"))


async def ask(runner: QueryRunner, frames: Frames, kind: str, **params: Any):
    query = Query(query_id=new_id(), kind=kind, params=params, timeout_seconds=60)
    runner.handle(query)
    return await frames.answer(query.query_id)


def cli(restic: Restic, creds: RepoCredentials, tmp: Path, *args: str) -> str:
    return subprocess.run([restic.binary, *args], env=restic_env(creds, tmp), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=True, timeout=120).stdout


def snapshot_ids(restic: Restic, creds: RepoCredentials, tmp: Path) -> list[str]:
    return [s["id"] for s in R.parse_snapshots(cli(restic, creds, tmp, "snapshots", "--json"))]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "d1" / "d2").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "d1" / "b.txt").write_text("bravo\n")
    (src / "d1" / "d2" / "c.txt").write_text("charlie\n")
    for i in range(25):
        (src / "many" / f"f{i:03d}").parent.mkdir(exist_ok=True)
        (src / "many" / f"f{i:03d}").write_bytes(b"x" * i)
    (src / "link").symlink_to("a.txt")
    os.mkfifo(src / "fifo")
    (src / "secret.key").write_text("k")
    (src / "secret.key").chmod(0o600)
    return src


async def test_ls_diff_and_preview(tmp_path: Path, restic: Restic, backend: Backend, tree: Path) -> None:
    creds = backend.creds()
    cli(restic, creds, tmp_path, "init")
    cheapen(backend.repo_dir(), creds.password)  # ~20 opens follow; init is not what this tests
    cli(restic, creds, tmp_path, "backup", "--tag", "docs", str(tree))
    (tree / "a.txt").write_text("alpha changed\n")
    (tree / "d1" / "b.txt").unlink()
    (tree / "new").mkdir()
    (tree / "new" / "n.txt").write_text("november\n")
    cli(restic, creds, tmp_path, "backup", "--tag", "docs", str(tree))
    first, second = snapshot_ids(restic, creds, tmp_path)
    frames = Frames()
    runner = runner_for(tmp_path, restic, creds, frames)

    # one level only: the directory's children, not d1's; types, sizes and modes as stat gives them
    items, info = await ask(runner, frames, q.KIND_LS, snapshot_id=first, path=str(tree))
    by_name = {e["name"]: e for e in items}
    assert sorted(by_name) == ["a.txt", "d1", "fifo", "link", "many", "secret.key"], sorted(by_name)
    assert info == {"path": str(tree), "truncated": False, "next_after": None}
    assert by_name["a.txt"]["type"] == "file" and by_name["a.txt"]["size"] == 6
    assert by_name["a.txt"]["mode"] == 0o100644 and by_name["secret.key"]["mode"] == 0o100600
    assert by_name["d1"]["type"] == "dir" and by_name["d1"]["mode"] & 0o170000 == 0o040000
    assert by_name["link"]["type"] == "symlink" and by_name["fifo"]["type"] == "other"
    assert q.LsEntry.model_validate(by_name["a.txt"]).mtime is not None
    # a trailing slash names the same directory; the root lists the top of the tree
    items, _ = await ask(runner, frames, q.KIND_LS, snapshot_id=first, path=str(tree / "d1") + "/")
    assert [e["name"] for e in items] == ["b.txt", "d2"]
    items, _ = await ask(runner, frames, q.KIND_LS, snapshot_id=first, path="/")
    assert [e["name"] for e in items] == [tree.parts[1]]

    # paging by name: 25 files in pages of 10, then the rest; the short id works too
    names: list[str] = []
    after = None
    pages = 0
    while True:
        items, info = await ask(runner, frames, q.KIND_LS, snapshot_id=second[:8], path=str(tree / "many"),
                                limit=10, **({"after": after} if after else {}))
        names += [e["name"] for e in items]
        pages += 1
        if not info["truncated"]:
            break
        after = info["next_after"]
        assert after == items[-1]["name"]
    assert names == [f"f{i:03d}" for i in range(25)] and pages == 3

    # errors with codes: unknown snapshot (0.14 exits 0, 0.18 exits 1), missing path, a file
    err = await ask(runner, frames, q.KIND_LS, snapshot_id="deadbeef", path="/")
    assert isinstance(err, QueryError) and err.code == q.ERR_SNAPSHOT_NOT_FOUND, err
    err = await ask(runner, frames, q.KIND_LS, snapshot_id="ab" * 32, path="/")  # a full id: 0.18 opens the file
    assert isinstance(err, QueryError) and err.code == q.ERR_SNAPSHOT_NOT_FOUND, err
    err = await ask(runner, frames, q.KIND_LS, snapshot_id=first, path=str(tree / "nope"))
    assert isinstance(err, QueryError) and err.code == q.ERR_PATH_NOT_FOUND, err
    err = await ask(runner, frames, q.KIND_LS, snapshot_id=first, path=str(tree / "a.txt"))
    assert isinstance(err, QueryError) and err.code == q.ERR_NOT_A_DIRECTORY, err
    err = await ask(runner, frames, q.KIND_LS, snapshot_id=first, path="relative/dir")
    assert isinstance(err, QueryError) and err.code == q.ERR_INVALID_PARAMS and "absolute" in err.message
    err = await ask(runner, frames, "snapshot.future", x=1)
    assert isinstance(err, QueryError) and err.code == q.ERR_UNKNOWN_KIND

    # diff: changed paths with their kinds, counts and restic's statistics
    items, info = await ask(runner, frames, q.KIND_DIFF, from_snapshot=first, to_snapshot=second)
    changes = {c["path"]: c["change"] for c in items}
    assert changes[str(tree / "a.txt")] == "modified"
    assert changes[str(tree / "d1" / "b.txt")] == "removed"
    assert changes[str(tree / "new") + "/"] == "added" and changes[str(tree / "new" / "n.txt")] == "added"
    assert info["total_changes"] == len(items) and info["truncated"] is False
    assert info["counts"] == {"modified": 1, "removed": 1, "added": 2}, info["counts"]
    assert info["summary"]["changed_files"] == 1 and info["summary"]["added"]["files"] == 1
    items, info = await ask(runner, frames, q.KIND_DIFF, from_snapshot=first, to_snapshot=second, limit=2)
    assert len(items) == 2 and info["truncated"] is True and info["total_changes"] == 4
    err = await ask(runner, frames, q.KIND_DIFF, from_snapshot=first, to_snapshot="0123abcd")
    assert isinstance(err, QueryError) and err.code == q.ERR_SNAPSHOT_NOT_FOUND, err

    # retention preview: keep-last 1 would remove the first snapshot; nothing is removed
    items, info = await ask(runner, frames, q.KIND_FORGET_PREVIEW, tag="docs", retention={"keep_last": 1})
    assert info == {"keep_count": 1, "remove_count": 1}
    kept = [i for i in items if i["action"] == "keep"]
    assert [i["id"] for i in items if i["action"] == "remove"] == [first]
    assert kept[0]["id"] == second and kept[0]["reasons"] == ["last snapshot"]
    assert snapshot_ids(restic, creds, tmp_path) == [first, second]
    err = await ask(runner, frames, q.KIND_FORGET_PREVIEW, tag="docs", retention={})
    assert isinstance(err, QueryError) and err.code == q.ERR_EMPTY_RETENTION

    # no secret ever in a frame
    text = "".join(f.model_dump_json() for f in frames.sent)
    assert PASSWORD not in text and backend.password not in text


async def test_ls_stops_restic_once_the_page_is_full(tmp_path: Path, restic: Restic) -> None:
    """A 3,000-entry directory asked for 100: the answer carries 100 and says truncated."""
    src = tmp_path / "big"
    src.mkdir()
    for i in range(3000):
        (src / f"n{i:05d}").touch()
    creds = RepoCredentials(url=str(tmp_path / "repo"), password=PASSWORD)
    cli(restic, creds, tmp_path, "init")
    cheapen(tmp_path / "repo", PASSWORD)
    cli(restic, creds, tmp_path, "backup", str(src))
    (snap,) = snapshot_ids(restic, creds, tmp_path)
    frames = Frames()
    runner = runner_for(tmp_path, restic, creds, frames)
    items, info = await ask(runner, frames, q.KIND_LS, snapshot_id=snap, path=str(src), limit=100, after="n01000")
    assert [e["name"] for e in items] == [f"n{i:05d}" for i in range(1001, 1101)]
    assert info["truncated"] is True and info["next_after"] == "n01100"
    items, info = await ask(runner, frames, q.KIND_LS, snapshot_id=snap, path=str(src), limit=5000)
    assert len(items) == 3000 and info["truncated"] is False
    chunks = [f for f in frames.sent if isinstance(f, QueryResult)]
    assert max(len(f.items) for f in chunks) <= 500, "large answers go out in chunks"


async def test_no_repository(tmp_path: Path, restic: Restic) -> None:
    frames = Frames()
    runner = runner_for(tmp_path, restic, None, frames)
    err = await ask(runner, frames, q.KIND_LS, snapshot_id="abcdef12", path="/")
    assert isinstance(err, QueryError) and err.code == q.ERR_NO_REPOSITORY
    assert "press p on the host" in err.message


def test_the_agent_answers_an_unknown_frame_type_with_error() -> None:
    """A newer server's message: logged, ignored, and answered with error{unknown_type} naming it,
    so the server can tell its operator at once instead of waiting for a deadline."""
    from rm_agent.handlers import dispatch

    class Parts:
        sent: list = []

        def send_payload(self, payload, ref=None):
            self.sent.append((payload, ref))
            return True

    parts = Parts()
    dispatch(parts, '{"type": "snapshot.mount", "id": "f1", "payload": {}}')
    ((payload, ref),) = parts.sent
    assert payload.code == "unknown_type" and "snapshot.mount" in payload.message and ref == "f1"
