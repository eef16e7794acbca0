"""The runner against real restic and real repositories (no restic mocks)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path


from rm_agent.jobs import Job, RunnerSettings
from rm_agent.runner import Runner
from rm_core import restic as R
from rm_core.enums import ActorKind, CredentialSlot, JobKind, JobState
from rm_core.ids import new_id
from rm_core.protocol import Bandwidth, RepoCredentials

from .conftest import PASSWORD, RESTIC, Recorder, creds_for, restic_cli


async def poll(cond, timeout: float = 30) -> None:
    """Poll an external condition (a real process, a file) until a deadline."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.05)


def make_runner(
    tmp_path: Path, rec: Recorder, creds: dict[CredentialSlot, RepoCredentials], *,
    bandwidth: Bandwidth | None = None, binary: str = RESTIC, grace: float = 30.0, allow_hooks: bool = False,
) -> Runner:
    settings = RunnerSettings(
        restic_binary=binary, tmp_dir=tmp_path / "agent-tmp", cancel_grace=grace,
        allow_hooks=allow_hooks, cache_dir=str(tmp_path / "cache"),
    )
    return Runner(settings, rec, lambda slot: creds.get(slot), lambda: bandwidth or Bandwidth())


def group(src: Path, tag: str = "docs", **kw) -> dict:
    return {"id": "g-" + tag, "name": tag, "includes": [str(src)], "excludes": [], "tag": tag,
            "retention": kw.pop("retention", {"keep_last": 1}), **kw}


async def run_job(runner: Runner, rec: Recorder, kind: JobKind, params: dict | None = None) -> tuple[str, object]:
    job = Job(new_id(), kind, params or {}, actor_kind=ActorKind.user)
    runner.submit(job)
    await runner.wait_idle()
    return job.job_id, rec.results[job.job_id]


async def test_init_new_and_existing(tmp_path: Path, recorder: Recorder) -> None:
    repo = tmp_path / "fresh"
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    _, res = await run_job(runner, recorder, JobKind.init)
    assert res.state == JobState.succeeded, res
    assert (repo / "config").exists()
    jid, res = await run_job(runner, recorder, JobKind.init)
    assert res.state == JobState.succeeded and res.summary == {"already_initialised": True}
    assert "already initialised" in recorder.text(jid)
    # The server runs init after every repository change: on an existing repository a
    # password that does not open it fails the init, not the first backup hours later.
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo, password="mistyped")})
    jid, res = await run_job(runner, recorder, JobKind.init)
    assert res.state == JobState.failed and "wrong repository password" in res.error, res


async def test_backup_succeeds_with_summary_snapshot_and_reports(tmp_path: Path, recorder: Recorder, repo: Path, source: Path) -> None:
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    jid, res = await run_job(runner, recorder, JobKind.backup, {"source_group": group(source, excludes=["*.bin"])})
    assert res.state == JobState.succeeded, (res, recorder.text(jid))
    assert res.exit_code == 0 and res.summary["files_new"] == 1  # b.bin excluded
    snap_id = res.summary["snapshot_id"]
    listed = R.parse_snapshots(restic_cli(str(repo), tmp_path, "snapshots", "--json").stdout)
    assert [s["short_id"] for s in listed] == [snap_id[:8]] and listed[0]["tags"] == ["docs"]
    kinds = [t for t, _ in recorder.reports]
    assert kinds == ["snapshots.report", "repo.stats"]
    assert recorder.reports[0][1]["snapshots"][0]["id"].startswith(snap_id)
    assert recorder.reports[1][1]["snapshots_count"] == 1 and recorder.reports[1][1]["total_size"] > 0
    assert f"snapshot {snap_id[:8]} saved" in recorder.text(jid)
    assert [j.job_id for j in recorder.started_jobs] == [jid]


async def test_secrets_never_in_argv_password_file_private_and_removed(tmp_path: Path, recorder: Recorder, repo: Path, source: Path) -> None:
    """A wrapper records what restic really got: argv, stdin, env, password file mode."""
    spy = tmp_path / "spy.log"
    wrapper = tmp_path / "restic-wrapper"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'{{ echo "ARGV $*"; echo "STDIN $(readlink /proc/self/fd/0)"; echo "FPS $RESTIC_PROGRESS_FPS"; '
        f'echo "MODE $(stat -c %a "$RESTIC_PASSWORD_FILE")"; echo "PWFILE $RESTIC_PASSWORD_FILE"; '
        f'echo "REPO $RESTIC_REPOSITORY"; }} >> {spy}\n'
        f'exec {RESTIC} "$@"\n'
    )
    wrapper.chmod(0o755)
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)},
                         bandwidth=Bandwidth(upload_kbps=50000, download_kbps=60000), binary=str(wrapper))
    jid, res = await run_job(runner, recorder, JobKind.backup, {"source_group": group(source), "limit_download_kbps": 70000})
    assert res.state == JobState.succeeded
    text = spy.read_text()
    assert PASSWORD not in text.replace(f"REPO {repo}", "")
    argv_lines = [ln for ln in text.splitlines() if ln.startswith("ARGV")]
    assert len(argv_lines) == 3  # backup, snapshots, stats
    assert all("--limit-upload 50000 --limit-download 70000" in ln for ln in argv_lines)
    assert all(PASSWORD not in ln for ln in argv_lines)
    assert set(ln for ln in text.splitlines() if ln.startswith(("STDIN", "FPS", "MODE"))) == {
        "STDIN /dev/null", "FPS 1", "MODE 600"}
    pwfiles = {ln.split(" ", 1)[1] for ln in text.splitlines() if ln.startswith("PWFILE")}
    assert pwfiles and not any(Path(p).exists() for p in pwfiles)
    assert PASSWORD not in recorder.text(jid)


async def test_rest_credentials_are_redacted_from_lines(tmp_path: Path, recorder: Recorder) -> None:
    creds = RepoCredentials(url="rest:http://127.0.0.1:1/repo/", password=PASSWORD,
                            rest_user="bob", rest_password="sekrit-rest-pw")
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds})
    jid, res = await run_job(runner, recorder, JobKind.snapshots)
    assert res.state == JobState.failed
    assert "connection refused" in recorder.text(jid) or "repository" in res.error
    assert "sekrit-rest-pw" not in recorder.text(jid) and "sekrit-rest-pw" not in (res.error or "")


async def test_wrong_password_and_missing_repo_are_told_apart(tmp_path: Path, recorder: Recorder, repo: Path) -> None:
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo, password="not it")})
    _, res = await run_job(runner, recorder, JobKind.check)
    assert res.state == JobState.failed and "wrong repository password" in res.error
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(tmp_path / "nothing-here")})
    _, res = await run_job(runner, recorder, JobKind.check)
    assert res.state == JobState.failed and R.ADVICE_INIT in res.error


async def test_missing_setup_names_the_console_key_and_the_rest_call(tmp_path: Path, recorder: Recorder,
                                                                     repo: Path) -> None:
    """What an operator must do is said the way they work: the console key first, REST after."""
    _, res = await run_job(make_runner(tmp_path, recorder, {}), recorder, JobKind.backup)
    assert res.error == "no repository configured for this host: press p on the host in the console " \
                        "(or PUT /api/v1/hosts/{id}/repo)", res
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    _, res = await run_job(runner, recorder, JobKind.prune)
    assert res.error == "prune needs the admin credentials: press a on the host in the console " \
                        "(or PUT /api/v1/hosts/{id}/repo/admin-credentials)", res
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(tmp_path / "nothing-here")})
    _, res = await run_job(runner, recorder, JobKind.snapshots)
    assert res.error.startswith("no restic repository at the configured location: press i on the host in the "
                                'console to initialise it (or POST /api/v1/hosts/{id}/jobs {"kind": "init"})'), res


async def test_locked_repo_is_reported_and_unlock_clears_stale_lock(tmp_path: Path, recorder: Recorder, repo: Path) -> None:
    # a restic that dies holding its lock: backup --stdin blocks on a pipe, then SIGKILL
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    env.update(RESTIC_REPOSITORY=str(repo), RESTIC_PASSWORD_FILE=str(pw))
    holder = subprocess.Popen([RESTIC, "backup", "--stdin"], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not restic_cli(str(repo), tmp_path, "--no-lock", "list", "locks").stdout.strip():
            assert asyncio.get_running_loop().time() < deadline, "restic never took its lock"
            await asyncio.sleep(0.1)  # polling a real external process with a deadline
    finally:
        holder.kill()
        holder.wait()
        holder.stdin.close()
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    _, res = await run_job(runner, recorder, JobKind.check)
    assert res.state == JobState.failed and "locked" in res.error
    _, res = await run_job(runner, recorder, JobKind.unlock, {"remove_all": False})
    assert res.state == JobState.succeeded
    assert restic_cli(str(repo), tmp_path, "--no-lock", "list", "locks").stdout.strip() == ""
    _, res = await run_job(runner, recorder, JobKind.check)
    assert res.state == JobState.succeeded and res.summary["no_errors"] is True


async def test_forget_per_group_and_refuses_empty_policy(tmp_path: Path, recorder: Recorder, repo: Path, source: Path) -> None:
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    g = group(source, "keepone", retention={"keep_last": 1})
    empty = group(source, "nopolicy", retention={})
    for gg in (g, g, empty):
        _, res = await run_job(runner, recorder, JobKind.backup, {"source_group": gg})
        assert res.state == JobState.succeeded
    recorder.reports.clear()
    jid, res = await run_job(runner, recorder, JobKind.forget, {"source_groups": [g, empty]})
    assert res.state == JobState.warning and "nopolicy" in res.error
    assert res.summary["groups"]["keepone"]["remove"] == 1 and res.summary["skipped"] == ["nopolicy"]
    tags = sorted(s["tags"][0] for s in R.parse_snapshots(restic_cli(str(repo), tmp_path, "snapshots", "--json").stdout))
    assert tags == ["keepone", "nopolicy"]
    assert recorder.reports[0][0] == "snapshots.report" and len(recorder.reports[0][1]["snapshots"]) == 2
    _, res = await run_job(runner, recorder, JobKind.forget, {"source_groups": [empty]})
    assert res.state == JobState.failed


async def test_prune_needs_admin_credentials(tmp_path: Path, recorder: Recorder, repo: Path) -> None:
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    _, res = await run_job(runner, recorder, JobKind.prune)
    assert res.state == JobState.failed and "admin credentials" in res.error
    runner = make_runner(tmp_path, recorder, {CredentialSlot.admin: creds_for(repo)})
    _, res = await run_job(runner, recorder, JobKind.prune)
    assert res.state == JobState.succeeded


async def test_check_with_read_data_subset(tmp_path: Path, recorder: Recorder, repo: Path, source: Path) -> None:
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    await run_job(runner, recorder, JobKind.backup, {"source_group": group(source)})
    jid, res = await run_job(runner, recorder, JobKind.check, {"read_data_subset": "1/1"})
    assert res.state == JobState.succeeded and res.summary == {"no_errors": True, "read_data_subset": "1/1"}
    assert "read all data" in recorder.text(jid) or "read " in recorder.text(jid)


async def test_restore_brings_back_identical_bytes(tmp_path: Path, recorder: Recorder, repo: Path, source: Path) -> None:
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    _, res = await run_job(runner, recorder, JobKind.backup, {"source_group": group(source)})
    target = tmp_path / "restored"
    _, rres = await run_job(runner, recorder, JobKind.restore, {
        "snapshot_id": res.summary["snapshot_id"], "paths": [str(source / "sub")], "target": str(target)})
    assert rres.state == JobState.succeeded, rres
    back = target / str(source).lstrip("/")
    assert (back / "sub" / "b.bin").read_bytes() == (source / "sub" / "b.bin").read_bytes()
    assert not (back / "a.txt").exists()  # only the requested path
    _, bad = await run_job(runner, recorder, JobKind.restore, {"snapshot_id": "x;rm", "paths": [], "target": "rel"})
    assert bad.state == JobState.failed


async def test_cancel_mid_backup_interrupts_and_leaves_no_lock(tmp_path: Path, recorder: Recorder, repo: Path) -> None:
    src = tmp_path / "slow"
    src.mkdir()
    (src / "data").write_bytes(os.urandom(3 << 20))
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    job = Job(new_id(), JobKind.backup, {"source_group": group(src), "limit_upload_kbps": 100})
    runner.submit(job)
    await recorder.wait_for(lambda: job.pid is not None and job.job_id in recorder.progress_)
    await poll(lambda: restic_cli(str(repo), tmp_path, "--no-lock", "list", "locks").stdout.strip() != "")
    t0 = time.monotonic()
    assert runner.cancel(job.job_id)
    await runner.wait_idle()
    res = recorder.results[job.job_id]
    assert res.state == JobState.cancelled
    assert time.monotonic() - t0 < 25  # SIGINT was enough; no SIGKILL after the 30 s grace
    assert restic_cli(str(repo), tmp_path, "--no-lock", "list", "locks").stdout.strip() == ""
    assert restic_cli(str(repo), tmp_path, "snapshots", "--json").stdout.strip() in ("[]", "null")
    assert not recorder.reports  # nothing to report after a cancelled backup


async def test_wall_clock_limit_interrupts(tmp_path: Path, recorder: Recorder, repo: Path) -> None:
    src = tmp_path / "slow"
    src.mkdir()
    (src / "data").write_bytes(os.urandom(3 << 20))
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    jid, res = await run_job(runner, recorder, JobKind.backup,
                             {"source_group": group(src), "limit_upload_kbps": 100, "timeout_seconds": 1.5})
    assert res.state == JobState.failed and "wall-clock limit" in res.error


async def test_one_restic_per_repository_others_queue(tmp_path: Path, recorder: Recorder, repo: Path, source: Path) -> None:
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    first = Job(new_id(), JobKind.backup, {"source_group": group(source, "one")})
    second = Job(new_id(), JobKind.backup, {"source_group": group(source, "two")})
    order: list[str] = []
    orig_started, orig_finished = recorder.started, recorder.finished
    recorder.started = lambda j: (order.append("start " + j.job_id), orig_started(j))  # type: ignore[method-assign]
    recorder.finished = lambda j, r: (order.append("end " + j.job_id), orig_finished(j, r))  # type: ignore[method-assign]
    runner.submit(first)
    runner.submit(second)
    assert not runner.submit(first)  # a duplicate command.run is ignored
    await runner.wait_idle()
    assert order == [f"start {first.job_id}", f"end {first.job_id}", f"start {second.job_id}", f"end {second.job_id}"]
    assert "waited for another restic job" in recorder.text(second.job_id)
    assert {recorder.results[j.job_id].state for j in (first, second)} == {JobState.succeeded}


async def test_hooks_only_when_allowed(tmp_path: Path, recorder: Recorder, repo: Path, source: Path) -> None:
    marker = tmp_path / "marker"
    g = group(source, pre_hook=f"echo pre-ran; touch {marker}", post_hook="echo post-ran $RM_BACKUP_STATE")
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    _, res = await run_job(runner, recorder, JobKind.backup, {"source_group": g})
    assert res.state == JobState.failed and "allow_hooks" in res.error and not marker.exists()
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)}, allow_hooks=True)
    jid, res = await run_job(runner, recorder, JobKind.backup, {"source_group": g})
    assert res.state == JobState.succeeded and marker.exists()
    assert "pre-ran" in recorder.text(jid) and "post-ran succeeded" in recorder.text(jid)
    jid, res = await run_job(runner, recorder, JobKind.backup, {"source_group": group(source, pre_hook="exit 7")})
    assert res.state == JobState.failed and "pre_hook failed with exit code 7" in res.error


async def test_missing_credentials_fail_clearly(tmp_path: Path, recorder: Recorder) -> None:
    runner = make_runner(tmp_path, recorder, {})
    jid, res = await run_job(runner, recorder, JobKind.backup, {"source_group": {"id": "g", "name": "g", "tag": "t", "includes": ["/x"]}})
    assert res.state == JobState.failed and "press p on the host" in res.error
    assert [j.job_id for j in recorder.started_jobs] == [jid]  # started, then finished: the server sees both


async def test_parameters_restic_cannot_take_fail_the_job_with_a_message(tmp_path: Path, recorder: Recorder,
                                                                         repo: Path, source: Path, caplog) -> None:
    """A NUL or control character in a stored repository URL, a restore target or an include
    path (stored before the server refused them) ends that job `failed` with a message that
    says what to fix; nothing crashes, nothing is logged as a traceback, and the next job
    with usable parameters runs (issue 18 item 6)."""
    bad = {CredentialSlot.repo: creds_for(str(repo) + "\0tail")}
    runner = make_runner(tmp_path, recorder, bad)
    _, res = await run_job(runner, recorder, JobKind.backup, {"source_group": group(source)})
    assert res.state == JobState.failed and "U+0000" in res.error and "press p on the host" in res.error, res
    await runner.remove_stale_locks()  # at connect: a bad URL is skipped with a warning, not raised
    esc = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(str(repo) + "\x1b[2J")})
    _, res = await run_job(esc, recorder, JobKind.check)
    assert res.state == JobState.failed and "U+001B" in res.error, res

    good = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    _, res = await run_job(good, recorder, JobKind.restore, {"snapshot_id": "latest", "target": "/tmp/x\0y"})
    assert res.state == JobState.failed and res.error.startswith("invalid job parameters"), res
    _, res = await run_job(good, recorder, JobKind.backup, {"source_group": group(Path(f"{source}\0"))})
    assert res.state == JobState.failed and "NUL" in res.error, res
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
    _, res = await run_job(good, recorder, JobKind.backup, {"source_group": group(source)})
    assert res.state == JobState.succeeded, res
