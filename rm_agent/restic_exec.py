"""Running one restic process: environment, password file, streaming, cancel, timeout."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rm_core.bounds import repository_url_problem
from rm_core.enums import CredentialSlot
from rm_core.protocol import RepoCredentials
from rm_core.restic import ADVICE_ADMIN, ADVICE_REPO, NO_PASSWORD, parse_version
from rm_core.urls import repository_url

LineHandler = Callable[[str], None]
_PR_SET_PDEATHSIG = 1
_STREAM_LIMIT = 8 * 1024 * 1024


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # If the agent dies, restic gets SIGINT and removes its lock instead of running on.
    with suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


class MissingCredentials(RuntimeError):
    pass


class UnusableParameters(ValueError):
    """restic cannot be started with what this job was given (the OS refuses a NUL byte in
    an argument or the environment): the job fails with this message, nothing crashes."""


@dataclass
class RunResult:
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    cancelled: bool = False
    timed_out: bool = False


@dataclass
class ResticContext:
    """What every restic run of one job shares: binary, repo, password, bandwidth."""

    binary: str
    creds: RepoCredentials
    tmp_dir: Path
    upload_kbps: int | None = None
    download_kbps: int | None = None
    cache_dir: str | None = None
    # `restic copy` reads this repository (RESTIC_FROM_*) and writes `creds`
    from_creds: RepoCredentials | None = None

    def global_flags(self) -> list[str]:
        flags: list[str] = []
        if self.upload_kbps:
            flags += ["--limit-upload", str(self.upload_kbps)]
        if self.download_kbps:
            flags += ["--limit-download", str(self.download_kbps)]
        if self.cache_dir:
            flags += ["--cache-dir", self.cache_dir]
        return flags


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    env["RESTIC_PROGRESS_FPS"] = "1"
    return env


async def run_restic(
    ctx: ResticContext,
    args: list[str],
    *,
    on_stdout: LineHandler | None = None,
    on_stderr: LineHandler | None = None,
    capture_stdout: bool = False,
    cancel: asyncio.Event | None = None,
    timeout: float | None = None,
    grace: float = 30.0,
    on_pid: Callable[[int | None], None] | None = None,
) -> RunResult:
    """Run `restic <global flags> <args>`; secrets go through env and a 0600 file only."""
    if not ctx.creds.password:
        raise MissingCredentials(NO_PASSWORD)
    problem = repository_url_problem(ctx.creds.url)
    if problem:  # stored before the server refused such URLs: say what to fix, do not start restic
        advice = ADVICE_ADMIN if ctx.creds.slot == CredentialSlot.admin else ADVICE_REPO
        raise MissingCredentials(f"{problem}; set it again: {advice}")
    if ctx.from_creds is not None and not ctx.from_creds.password:
        raise MissingCredentials("the source repository has no password; set it with PUT /hosts/{id}/repo")
    ctx.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    files: list[str] = []
    try:
        env = _base_env()
        env["RESTIC_REPOSITORY"] = repository_url(ctx.creds.url, ctx.creds.rest_user, ctx.creds.rest_password)
        env["RESTIC_PASSWORD_FILE"] = password_file(ctx.tmp_dir, ctx.creds.password, files)
        if ctx.from_creds is not None:
            # restic 0.14 and 0.18 both read the source of `copy` from these (the flags
            # --from-repo/--from-password-file have the same names in both; the env keeps
            # the REST credentials out of argv)
            src = ctx.from_creds
            env["RESTIC_FROM_REPOSITORY"] = repository_url(src.url, src.rest_user, src.rest_password)
            env["RESTIC_FROM_PASSWORD_FILE"] = password_file(ctx.tmp_dir, src.password or "", files)
        return await _spawn(
            [ctx.binary, *ctx.global_flags(), *args],
            env,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            capture_stdout=capture_stdout,
            cancel=cancel,
            timeout=timeout,
            grace=grace,
            on_pid=on_pid,
        )
    finally:
        for path in files:
            with suppress(FileNotFoundError):
                os.unlink(path)


def password_file(tmp_dir: Path, password: str, made: list[str]) -> str:
    """A 0600 file holding `password` (restic reads it; the caller removes every file in `made`)."""
    tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, path = tempfile.mkstemp(prefix="restic-pw-", dir=tmp_dir)
    made.append(path)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    return path


async def _spawn(
    argv: list[str],
    env: dict[str, str],
    *,
    on_stdout: LineHandler | None,
    on_stderr: LineHandler | None,
    capture_stdout: bool,
    cancel: asyncio.Event | None,
    timeout: float | None,
    grace: float,
    on_pid: Callable[[int | None], None] | None = None,
    cwd: str | None = None,
) -> RunResult:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            limit=_STREAM_LIMIT,
        )
    except ValueError:  # "embedded null byte": no process can be given it
        raise UnusableParameters(f"cannot start {os.path.basename(argv[0])}: one of the job's paths or "
                                 "settings holds a NUL byte; correct it on the server") from None
    if on_pid:
        on_pid(proc.pid)
    out_buf: list[str] = []
    err_buf: list[str] = []

    async def pump(stream: asyncio.StreamReader, handler: LineHandler | None, buf: list[str], keep: bool) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the limit: skip the rest of it
                raw = await stream.read(_STREAM_LIMIT)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if keep:
                buf.append(line)
            if handler:
                handler(line)

    assert proc.stdout and proc.stderr
    pumps = asyncio.gather(
        pump(proc.stdout, on_stdout, out_buf, capture_stdout),
        pump(proc.stderr, on_stderr, err_buf, True),
    )
    waiter = asyncio.ensure_future(proc.wait())
    cancel_wait = asyncio.ensure_future(cancel.wait()) if cancel else None
    cancelled = timed_out = False
    try:
        waitset = {waiter} | ({cancel_wait} if cancel_wait else set())
        done, _ = await asyncio.wait(waitset, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            cancelled = bool(cancel_wait and cancel_wait in done)
            timed_out = not cancelled
            await _interrupt(proc, waiter, grace)
        await waiter
        await pumps
    except BaseException:
        # the agent itself is shutting down: do not leave restic running with its lock
        if proc.returncode is None:
            await asyncio.shield(_interrupt(proc, waiter, grace))
        raise
    finally:
        if cancel_wait:
            cancel_wait.cancel()
        if on_pid:
            on_pid(None)
    # restic exits 130 on SIGINT (0.14) or 1 (newer)
    return RunResult(proc.returncode, "\n".join(out_buf), "\n".join(err_buf[-200:]), cancelled, timed_out)


async def _interrupt(proc: asyncio.subprocess.Process, waiter: asyncio.Future[int], grace: float) -> None:
    """SIGINT, wait up to `grace` seconds for restic to clean up, then SIGKILL."""
    with suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(asyncio.shield(waiter), grace)
    except asyncio.TimeoutError:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await waiter


async def run_hook(
    command: str, *, on_line: LineHandler, timeout: float, env: dict[str, str] | None = None,
    cancel: asyncio.Event | None = None, grace: float = 30.0,
) -> RunResult:
    """Run a pre/post hook with /bin/sh; its output goes to the job log."""
    full_env = _base_env()
    full_env.pop("RESTIC_PROGRESS_FPS", None)
    full_env.update(env or {})
    return await _spawn(
        ["/bin/sh", "-c", command], full_env, on_stdout=on_line, on_stderr=on_line,
        capture_stdout=False, cancel=cancel, timeout=timeout, grace=grace,
    )


async def detect_version(binary: str = "restic") -> str | None:
    """`restic version` once at agent start -> "0.14.0" (None when restic is missing)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            binary, "version", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
    except FileNotFoundError:
        return None
    out, _ = await proc.communicate()
    v = parse_version(out.decode(errors="replace"))
    return None if v is None else ".".join(map(str, v))


