"""The rotate_key job kind: one phase of a repository key rotation the server drives
(docs/protocol.md, "Key rotation").

  add       `restic key add` of the new password (unless it opens the repository already: a
            run after a kill finds its own key), then proof: `key list` with the new password
            names its key as current and still lists the old one
  remove    `key remove` of the old key, only when this agent's own password is the new key's
            (a `key list` with it says so); an old key already gone is success
  rollback  the new key removed again with the old password (an add the server gave up on)

Every phase can be killed at any point and run again: each starts by looking at the keys.
"""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import replace
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field

from rm_agent.job_run import JobRun
from rm_agent.jobs import JobFailed, JobResult
from rm_agent.restic_exec import ResticContext, password_file
from rm_core import restic as R
from rm_core.enums import JobState
from rm_core.restic_keys import current_key, has_key, parse_keys, same_key


class RotateParams(BaseModel):
    model_config = ConfigDict(extra="ignore")
    phase: str = Field(pattern=r"^(add|remove|rollback)$")
    rotation_id: str = ""
    new_password: Optional[str] = Field(default=None, min_length=1)  # add, rollback (never stored)
    old_key_id: Optional[str] = Field(default=None, pattern=r"^[0-9a-f]{8,64}$")  # remove
    new_key_id: Optional[str] = Field(default=None, pattern=r"^[0-9a-f]{8,64}$")  # remove


async def _keys(run: JobRun, ctx: ResticContext, *, wrong_is_none: bool = False) -> Optional[List[Dict[str, Any]]]:
    """`key list --json` with `ctx`'s password (None when it opens no key and wrong_is_none)."""
    # a probe of a password that may open nothing: its "wrong password" is no error for the log
    res = await run.restic(["key", "list", "--json"], capture=True, log_stdout=False, ctx=ctx,
                           log_stderr=not wrong_is_none)
    if res.exit_code != 0:
        wrong = res.exit_code == R.EXIT_WRONG_PASSWORD or R.classify_error_text(res.stderr) == R.ERR_WRONG_PASSWORD
        if wrong and wrong_is_none:
            return None
        outcome = R.classify_exit(res.exit_code, res.stderr)
        raise JobFailed(f"restic key list failed: {R.redact(outcome.error or '', run.job.secrets)}", res.exit_code)
    return parse_keys(res.stdout)


def _with_password(ctx: ResticContext, password: str) -> ResticContext:
    return replace(ctx, creds=ctx.creds.model_copy(update={"password": password}), from_creds=None)


async def rotate_key(run: JobRun) -> JobResult:
    params = RotateParams.model_validate(run.job.params)
    if params.new_password:
        run.job.secrets.append(params.new_password)
    if params.phase == "add":
        return await _add(run, params)
    if params.phase == "remove":
        return await _remove(run, params)
    return await _rollback(run, params)


async def _add(run: JobRun, params: RotateParams) -> JobResult:
    if not params.new_password:
        raise JobFailed("rotate_key add needs the new password (the server sends it)")
    old = current_key(await _keys(run, run.ctx) or [])
    if old is None:
        raise JobFailed("restic key list named no current key for this agent's password")
    new_ctx = _with_password(run.ctx, params.new_password)
    seen = await _keys(run, new_ctx, wrong_is_none=True)
    if seen is None:
        run.note(f"adding a new repository key (the current key is {old['id'][:8]})")
        made: List[str] = []
        try:
            path = password_file(run.ctx.tmp_dir, params.new_password, made)
            res = await run.restic(["key", "add", "--new-password-file", path])
        finally:
            for p in made:
                with suppress(FileNotFoundError):
                    os.unlink(p)
        if res.exit_code != 0:
            return run.outcome(res, {"phase": "add", "old_key_id": old["id"]})
        seen = await _keys(run, new_ctx, wrong_is_none=True)
        if seen is None:
            raise JobFailed("restic added a key, but the new password does not open the repository")
    else:
        run.note("the new password opens the repository already (an earlier run added its key)")
    new = current_key(seen)
    if new is None or same_key(new["id"], old["id"]):
        raise JobFailed("the new password opens the old key: the rotation cannot tell the keys apart")
    if not has_key(seen, old["id"]):
        raise JobFailed(f"the old key {old['id'][:8]} is not listed with the new password")
    run.note(f"the new key {new['id'][:8]} opens the repository; the old key {old['id'][:8]} is still there")
    return JobResult(JobState.succeeded, 0, {"phase": "add", "old_key_id": old["id"], "new_key_id": new["id"],
                                             "verified": True})


async def _remove(run: JobRun, params: RotateParams) -> JobResult:
    if not params.old_key_id or not params.new_key_id:
        raise JobFailed("rotate_key remove needs the old and the new key id")
    keys = await _keys(run, run.ctx)
    assert keys is not None
    mine = current_key(keys)
    if mine is None or not same_key(mine["id"], params.new_key_id):
        raise JobFailed(f"this agent's password opens key {mine['id'][:8] if mine else '?'}, not the new key "
                        f"{params.new_key_id[:8]}: the old key is left in place")
    if not has_key(keys, params.old_key_id):
        run.note(f"the old key {params.old_key_id[:8]} is gone already")
        return JobResult(JobState.succeeded, 0, {"phase": "remove", "removed_key_id": params.old_key_id,
                                                 "already_removed": True, "keys": len(keys)})
    listed = next(k["id"] for k in keys if same_key(k["id"], params.old_key_id))
    res = await run.restic(["key", "remove", listed])
    if res.exit_code != 0:
        return run.outcome(res, {"phase": "remove"})
    after = await _keys(run, run.ctx) or []
    if has_key(after, params.old_key_id):
        raise JobFailed(f"restic said it removed key {listed[:8]}, but it is still listed")
    run.note(f"removed the old key {listed[:8]}; {len(after)} key(s) left")
    return JobResult(JobState.succeeded, 0, {"phase": "remove", "removed_key_id": listed, "keys": len(after)})


async def _rollback(run: JobRun, params: RotateParams) -> JobResult:
    if not params.new_password:
        raise JobFailed("rotate_key rollback needs the abandoned password (the server sends it)")
    seen = await _keys(run, _with_password(run.ctx, params.new_password), wrong_is_none=True)
    if seen is None:
        run.note("the abandoned password opens no key: nothing to remove")
        return JobResult(JobState.succeeded, 0, {"phase": "rollback", "removed_key_id": None})
    abandoned = current_key(seen)
    mine = current_key(await _keys(run, run.ctx) or [])
    if abandoned is None or mine is None or same_key(abandoned["id"], mine["id"]):
        raise JobFailed("the abandoned key is the one this agent uses: it is left in place")
    res = await run.restic(["key", "remove", abandoned["id"]])
    if res.exit_code != 0:
        return run.outcome(res, {"phase": "rollback"})
    run.note(f"removed the abandoned key {abandoned['id'][:8]}")
    return JobResult(JobState.succeeded, 0, {"phase": "rollback", "removed_key_id": abandoned["id"]})

