"""Live queries from the server (`query` frames): list a snapshot directory, diff two
snapshots, preview a retention policy. Each runs one read-only restic (`--no-lock`, so a
running backup neither blocks nor is blocked by it) and streams its answer back in
`query.result` chunks, or answers `query.error` with a code from rm_core.queries.

Secrets reach restic only through restic_exec (environment + 0600 password file)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional

from pydantic import ValidationError

from rm_agent.restic_exec import MissingCredentials, ResticContext, RunResult, run_restic
from rm_core import queries as q
from rm_core import restic as R
from rm_core import restic_listing as L
from rm_core.enums import CredentialSlot
from rm_core.protocol import Bandwidth, Payload, Query, QueryError, QueryResult, RepoCredentials

log = logging.getLogger("rm_agent.queries")

Send = Callable[[Payload], bool]


class QueryFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ResultStream:
    """Items go out in chunks small enough for one WebSocket frame; `finish` sends the last."""

    chunk_items = 500
    chunk_bytes = 256 * 1024

    def __init__(self, send: Send, query_id: str) -> None:
        self.send = send
        self.query_id = query_id
        self.seq = 0
        self.items: List[Dict[str, Any]] = []
        self.size = 0

    def add(self, item: Dict[str, Any], size_hint: int) -> None:
        self.items.append(item)
        self.size += size_hint
        if len(self.items) >= self.chunk_items or self.size >= self.chunk_bytes:
            self._flush(done=False, info={})

    def finish(self, info: Dict[str, Any]) -> None:
        self._flush(done=True, info=info)

    def _flush(self, done: bool, info: Dict[str, Any]) -> None:
        self.send(QueryResult(query_id=self.query_id, seq=self.seq, items=self.items, done=done, info=info))
        self.seq += 1
        self.items, self.size = [], 0


Handler = Callable[["QueryRunner", ResticContext, Any, ResultStream, float], Awaitable[None]]


class QueryRunner:
    """Runs the queries of one agent, a few at a time."""

    max_concurrent = 4
    grace = 5.0  # read-only restic without a lock stops at once on SIGINT

    def __init__(
        self, *, restic_binary: str, tmp_dir: Path, send: Send,
        credentials: Callable[[CredentialSlot], Optional[RepoCredentials]],
        bandwidth: Callable[[], Bandwidth] = Bandwidth, cache_dir: Optional[str] = None,
    ) -> None:
        self.restic_binary = restic_binary
        self.tmp_dir = tmp_dir
        self.send = send
        self.credentials = credentials
        self.bandwidth = bandwidth
        self.cache_dir = cache_dir
        self.tasks: Dict[str, asyncio.Task[None]] = {}

    def handle(self, query: Query) -> None:
        """Start answering `query` (a repeated query id is ignored: it is being answered)."""
        if query.query_id in self.tasks:
            return
        if len(self.tasks) >= self.max_concurrent:
            self._error(query.query_id, q.ERR_BUSY,
                        f"this agent already answers {self.max_concurrent} queries; try again in a moment")
            return
        self.tasks[query.query_id] = asyncio.ensure_future(self._run(query))

    async def shutdown(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def _run(self, query: Query) -> None:
        try:
            handler = KINDS.get(query.kind)
            if handler is None:
                raise QueryFailed(q.ERR_UNKNOWN_KIND, f"this agent does not know query kind {query.kind!r}; "
                                                      "upgrade rm-agent")
            try:
                params = q.PARAMS[query.kind].model_validate(query.params)
            except ValidationError as exc:
                raise QueryFailed(q.ERR_INVALID_PARAMS, f"invalid {query.kind} params: {_first_error(exc)}") from None
            # another host's repository, for browsing a dead host's snapshot from this one: the
            # credentials came with this query only and are not kept
            creds = getattr(params, "repo", None) or self.credentials(CredentialSlot.repo)
            if creds is None or not creds.password:
                raise QueryFailed(q.ERR_NO_REPOSITORY, R.NO_REPOSITORY)
            bw = self.bandwidth()
            ctx = ResticContext(binary=self.restic_binary, creds=creds, tmp_dir=self.tmp_dir,
                                download_kbps=bw.download_kbps, cache_dir=self.cache_dir)
            await handler(self, ctx, params, ResultStream(self.send, query.query_id), query.timeout_seconds)
        except QueryFailed as exc:
            self._error(query.query_id, exc.code, exc.message)
        except MissingCredentials as exc:
            self._error(query.query_id, q.ERR_NO_REPOSITORY, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must still answer, or the operator waits for the deadline
            log.exception("query %s (%s) failed", query.query_id, query.kind)
            self._error(query.query_id, "agent_error", f"agent error: {type(exc).__name__}")
        finally:
            self.tasks.pop(query.query_id, None)

    def _error(self, query_id: str, code: str, message: str) -> None:
        self.send(QueryError(query_id=query_id, code=code, message=message))

    async def restic(self, ctx: ResticContext, args: List[str], timeout: float, *,
                     on_stdout: Optional[Callable[[str], None]] = None, stop: Optional[asyncio.Event] = None,
                     capture: bool = False) -> RunResult:
        res = await run_restic(ctx, ["--no-lock", *args], on_stdout=on_stdout, capture_stdout=capture,
                               cancel=stop, timeout=timeout, grace=self.grace)
        if res.timed_out:
            raise QueryFailed(q.ERR_TIMEOUT, f"restic did not answer within {timeout:.0f} s")
        return res


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(x) for x in err["loc"])
    return f"{loc}: {err['msg']}" if loc else err["msg"]


def _secrets(ctx: ResticContext) -> List[str]:
    return [s for s in (ctx.creds.password, ctx.creds.rest_password) if s]


def _failure(ctx: ResticContext, res: RunResult, what: str) -> QueryFailed:
    """A restic that exited non-zero, as the query error the operator should see."""
    stderr = R.redact(res.stderr, _secrets(ctx))
    if L.no_matching_id(stderr):
        return QueryFailed(q.ERR_SNAPSHOT_NOT_FOUND, f"{what}: {_last_line(stderr)}")
    out = R.classify_exit(res.exit_code, stderr)
    # restic's own last words (the JSON exit_error's message on newer versions) say more than a code
    detail = _last_line(stderr) if out.error_code in (None, R.ERR_FATAL) else out.error
    return QueryFailed(out.error_code or R.ERR_FATAL, f"{what}: {detail or out.error}")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        msg = R.parse_json_line(ln)
        if msg is None:
            return ln
        if msg.get("message"):
            return str(msg["message"])
    return lines[-1] if lines else ""


# ------------------------------------------------------------------ kinds


async def snapshot_ls(runner: QueryRunner, ctx: ResticContext, params: q.LsParams, out: ResultStream,
                      timeout: float) -> None:
    """One directory level; stops restic as soon as one entry more than the page is seen."""
    stop = asyncio.Event()
    state: Dict[str, Any] = {"snapshot": False, "self": None, "count": 0, "truncated": False, "last": None}

    def on_stdout(line: str) -> None:
        if stop.is_set():
            return
        msg = R.parse_json_line(line)
        kind = L.ls_kind(msg) if msg is not None else None
        if kind == "snapshot":
            state["snapshot"] = True
            return
        if kind != "node" or msg is None:
            return
        path = str(msg.get("path", ""))
        if path == params.path:
            state["self"] = msg
            return
        # a child of the directory (restic never recurses without --recursive; checked anyway)
        if L.parent_dir(path) != params.path:
            return
        name = str(msg.get("name", ""))
        if params.after is not None and name <= params.after:
            return
        if state["count"] >= params.limit:
            state["truncated"] = True
            stop.set()
            return
        state["count"] += 1
        state["last"] = name
        out.add(L.ls_entry(msg), len(name) + 120)

    args = ["ls", "--json", params.snapshot_id, params.path]
    res = await runner.restic(ctx, args, timeout, on_stdout=on_stdout, stop=stop)
    if not res.cancelled and res.exit_code != 0:
        raise _failure(ctx, res, f"restic ls {params.snapshot_id}")
    if not state["snapshot"]:
        raise QueryFailed(q.ERR_SNAPSHOT_NOT_FOUND, f"no snapshot {params.snapshot_id} in this host's repository")
    node = state["self"]
    if node is not None and node.get("type") != "dir":
        raise QueryFailed(q.ERR_NOT_A_DIRECTORY, f"{params.path} is a {node.get('type')} in snapshot "
                                                 f"{params.snapshot_id}, not a directory")
    if node is None and state["count"] == 0 and params.path != "/":
        raise QueryFailed(q.ERR_PATH_NOT_FOUND, f"{params.path} is not in snapshot {params.snapshot_id}")
    out.finish({"path": params.path, "truncated": state["truncated"],
                "next_after": state["last"] if state["truncated"] else None})


async def snapshot_diff(runner: QueryRunner, ctx: ResticContext, params: q.DiffParams, out: ResultStream,
                        timeout: float) -> None:
    """Changed paths up to the limit; the counts cover every change restic reports."""
    counts: Dict[str, int] = {}
    state: Dict[str, Any] = {"total": 0, "summary": {}}

    def on_stdout(line: str) -> None:
        msg = R.parse_json_line(line)
        if msg is None:
            return
        change = L.diff_change(msg)
        if change is not None:
            state["total"] += 1
            counts[change["change"]] = counts.get(change["change"], 0) + 1
            if state["total"] <= params.limit:
                out.add(change, len(change["path"]) + 60)
            return
        stats = L.diff_statistics(msg)
        if stats is not None:
            state["summary"] = stats

    args = ["diff", "--json", params.from_snapshot, params.to_snapshot]
    res = await runner.restic(ctx, args, timeout, on_stdout=on_stdout)
    if res.exit_code != 0:
        raise _failure(ctx, res, f"restic diff {params.from_snapshot} {params.to_snapshot}")
    out.finish({"summary": state["summary"], "counts": counts, "total_changes": state["total"],
                "truncated": state["total"] > params.limit})


async def forget_preview(runner: QueryRunner, ctx: ResticContext, params: q.ForgetPreviewParams,
                         out: ResultStream, timeout: float) -> None:
    """What `forget` with this policy would keep and remove (`--dry-run`: nothing changes)."""
    try:
        args = R.forget_args(params.tag, params.retention)
    except ValueError as exc:  # EmptyRetentionPolicy included
        raise QueryFailed(q.ERR_EMPTY_RETENTION, str(exc)) from None
    args.insert(1, "--dry-run")
    res = await runner.restic(ctx, args, timeout, capture=True)
    if res.exit_code != 0:
        raise _failure(ctx, res, "restic forget --dry-run")
    keep = remove = 0
    try:
        doc = R.load_json_document(res.stdout)
    except ValueError:
        raise QueryFailed(R.ERR_FATAL, "restic forget --dry-run printed no JSON document") from None
    for item in L.forget_preview([] if doc is None else doc):
        keep += item["action"] == "keep"
        remove += item["action"] == "remove"
        out.add(item, 400)
    out.finish({"keep_count": keep, "remove_count": remove})


KINDS: Dict[str, Handler] = {
    q.KIND_LS: snapshot_ls,
    q.KIND_DIFF: snapshot_diff,
    q.KIND_FORGET_PREVIEW: forget_preview,
}
