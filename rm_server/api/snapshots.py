"""Looking inside a host's snapshots, live through its agent: one directory level (ls), the
changes between two snapshots (diff), and what a retention policy would remove (preview)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from rm_core import queries as q
from rm_core.enums import Role
from rm_server.api.common import OPERATOR_KEY, parse_body, query_int, reply, requires
from rm_server.api.doc import documented, q_int, q_str
from rm_server.errors import BadGateway, BadRequest, ConflictError, Forbidden
from rm_server.keys import CREDENTIALS, QUERIES, STORE

routes = web.RouteTableDef()
SNAPSHOT_ID = TypeAdapter(q.SnapshotId)
FROM_HOST_ID = q_str("from_host_id", "admin only: look at this other host's repository through this host's agent "
                                     "(the other machine died)", maxLength=64)


def _params(model: type[q.Params], names: dict[str, str], **values: Any) -> Any:
    """Build query params; a 400 names the request's own parameter (`from`, not `from_snapshot`)."""
    try:
        return model(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        fields = []
        for err in exc.errors(include_url=False, include_input=False):
            field = names.get(str(err["loc"][0]) if err["loc"] else "", str(err["loc"][0]) if err["loc"] else "query")
            fields.append({"field": field, "message": err["msg"]})
        first = fields[0]
        raise BadRequest(f"invalid {first['field']}: {first['message']}", {"fields": fields}) from None


def _answer(model: type[BaseModel], **fields: Any) -> BaseModel:
    """The agent's answer in its REST shape; an answer that does not fit is the agent's fault."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise BadGateway(f"the agent's answer does not fit {model.__name__}: {exc.errors()[0]['msg']}",
                         code="bad_agent_reply") from None


async def _other_repo(request: web.Request, host_id: str) -> dict[str, Any]:
    """`from_host_id`: look at another host's repository through this host's agent (the other
    machine died). Admin only, like a cross-host restore: its credentials travel to this agent."""
    from_host_id = request.query.get("from_host_id")
    if not from_host_id:
        return {}
    if len(from_host_id) > 64:  # a host id, as JobBody.from_host_id
        raise BadRequest("from_host_id is not a host id", {"field": "from_host_id"})
    if request[OPERATOR_KEY].role != Role.admin:
        raise Forbidden("browsing another host's repository needs the admin role: it hands that host's "
                        "repository credentials to this one for the query", {"field": "from_host_id"})
    if from_host_id == host_id:
        raise BadRequest("from_host_id names the host itself; leave it out", {"field": "from_host_id"})
    await request.app[STORE].hosts.get(from_host_id)
    creds = await request.app[CREDENTIALS].repo_credentials(from_host_id)
    if creds is None:
        raise ConflictError(f"host {from_host_id} has no repository credentials", {"from_host_id": from_host_id})
    return {"repo": creds}


@routes.get("/api/v1/hosts/{id}/snapshots/{sid}/ls")
@requires(Role.viewer)
@documented("One directory level of a snapshot, asked of the host's agent live",
            description="Entries are ordered by name; pass the reply's `next_after` as `after` for the next page. "
                        "409 `host_offline` when the agent is not connected (or `agent_too_old`), 504 when it does "
                        "not answer in time, 429 when it is busy, 502 when restic fails.",
            reply=q.LsPage, errors=(409, 429, 502, 504), path={"sid": SNAPSHOT_ID}, query=(
                q_str("path", "an absolute directory inside the snapshot (default /)", pattern=q.DIR_PATTERN,
                      maxLength=q.MAX_PATH_LENGTH),
                q_str("after", "the page after this entry name", maxLength=q.MAX_PATH_LENGTH),
                q_int("limit", 1, q.MAX_LS_LIMIT, q.DEFAULT_LS_LIMIT, "at most this many entries"),
                FROM_HOST_ID,
            ))
async def snapshot_ls(request: web.Request) -> web.Response:
    host_id = request.match_info["id"]
    limit = query_int(request, "limit", q.DEFAULT_LS_LIMIT, 1, q.MAX_LS_LIMIT)  # bad input first: 400 before 404
    await request.app[STORE].hosts.get(host_id)
    params: q.LsParams = _params(
        q.LsParams, {"snapshot_id": "snapshot_id"}, snapshot_id=request.match_info["sid"],
        path=request.query.get("path") or "/", after=request.query.get("after") or None, limit=limit,
        **await _other_repo(request, host_id),
    )
    items, info = await request.app[QUERIES].ask(host_id, q.KIND_LS, params, max_items=params.limit)
    return reply(_answer(q.LsPage, path=params.path, entries=items, truncated=bool(info.get("truncated")),
                         next_after=info.get("next_after")))


@routes.get("/api/v1/hosts/{id}/snapshots/diff")
@requires(Role.viewer)
@documented("What changed between two snapshots (restic diff), asked of the host's agent live",
            description="The summary, counts per change kind and the changed paths (capped at `limit`; "
                        "`truncated` says more exist). Errors as for `ls`.",
            reply=q.DiffResult, errors=(409, 429, 502, 504), query=(
                q_str("from", "the older snapshot's id", required=True, pattern=q.SNAPSHOT_ID_PATTERN),
                q_str("to", "the newer snapshot's id", required=True, pattern=q.SNAPSHOT_ID_PATTERN),
                q_int("limit", 1, q.MAX_DIFF_LIMIT, q.DEFAULT_DIFF_LIMIT, "at most this many changed paths"),
                FROM_HOST_ID,
            ))
async def snapshot_diff(request: web.Request) -> web.Response:
    host_id = request.match_info["id"]
    limit = query_int(request, "limit", q.DEFAULT_DIFF_LIMIT, 1, q.MAX_DIFF_LIMIT)  # bad input first: 400 before 404
    for name in ("from", "to"):
        if not request.query.get(name):
            raise BadRequest(f"query parameter {name!r} is required: the id of a snapshot", {"field": name})
    await request.app[STORE].hosts.get(host_id)
    params: q.DiffParams = _params(
        q.DiffParams, {"from_snapshot": "from", "to_snapshot": "to"}, from_snapshot=request.query["from"],
        to_snapshot=request.query["to"], limit=limit, **await _other_repo(request, host_id),
    )
    items, info = await request.app[QUERIES].ask(host_id, q.KIND_DIFF, params, max_items=params.limit)
    return reply(_answer(
        q.DiffResult, from_snapshot=params.from_snapshot, to_snapshot=params.to_snapshot,
        summary=info.get("summary") or {}, changes=items, counts=info.get("counts") or {},
        total_changes=info.get("total_changes", len(items)), truncated=bool(info.get("truncated")),
    ))


@routes.post("/api/v1/hosts/{id}/source-groups/{sid}/retention-preview")
@requires(Role.viewer)  # changes nothing: forget runs with --dry-run
@documented("What a retention policy would keep and remove (restic forget --dry-run), before saving it",
            description="Without `retention` in the body the group's current policy is previewed. An empty policy "
                        "is refused (it would remove every snapshot). Errors as for `ls`.",
            body=q.RetentionPreviewBody, reply=q.RetentionPreview, errors=(409, 429, 502, 504),
            examples={"keep 7 daily": {"retention": {"keep_daily": 7}}})
async def retention_preview(request: web.Request) -> web.Response:
    host_id, group_id = request.match_info["id"], request.match_info["sid"]
    body = await parse_body(request, q.RetentionPreviewBody)
    group = await request.app[STORE].schedules.group(host_id, group_id)
    retention = body.retention or group.retention
    if retention.is_empty():
        raise BadRequest("retention policy is empty: forget would remove every snapshot of this group; "
                         "set at least one keep_* value", {"field": "retention"}, code="empty_retention")
    params = q.ForgetPreviewParams(tag=group.tag, retention=retention)
    items, _ = await request.app[QUERIES].ask(host_id, q.KIND_FORGET_PREVIEW, params)
    keep = [i for i in items if i.get("action") == "keep"]
    remove = [i for i in items if i.get("action") == "remove"]
    return reply(_answer(q.RetentionPreview, source_group_id=group.id, tag=group.tag, retention=retention,
                         keep=keep, remove=remove, keep_count=len(keep), remove_count=len(remove)))
