"""Fixtures for agent tests: real restic repositories and an event recorder."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from rm_agent.jobs import Job, JobResult
from rm_core.protocol import Bandwidth, RepoCredentials
from rm_core.restic import Progress
from tests.restic_keys import cheapen

PASSWORD = "correct horse battery staple"
RESTIC = shutil.which("restic") or "/usr/bin/restic"


def restic_env(repo: str, password: str, tmp: Path) -> dict[str, str]:
    pw = tmp / f"pw-{os.getpid()}-{time.monotonic_ns()}"
    pw.write_text(password)
    pw.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    env.update(RESTIC_REPOSITORY=repo, RESTIC_PASSWORD_FILE=str(pw))
    return env


def restic_cli(repo: str, tmp: Path, *args: str, password: str = PASSWORD, check: bool = True) -> subprocess.CompletedProcess:
    """Run restic directly (the test's own view of the repository)."""
    return subprocess.run(
        [RESTIC, *args], env=restic_env(repo, password, tmp), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, check=check, timeout=120,
    )


@pytest.fixture(scope="session")
def _template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("template")
    repo = base / "repo"
    restic_cli(str(repo), base, "init")
    cheapen(repo, PASSWORD)  # every test opens its copy many times (tests/restic_keys.py)
    return repo


@pytest.fixture
def repo(tmp_path: Path, _template_repo: Path) -> Path:
    """A fresh, initialised local repository (copied from one made per session)."""
    dest = tmp_path / "repo"
    shutil.copytree(_template_repo, dest)
    return dest


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(4096))
    return src


def big_source(root: Path, size_mb: int = 300) -> Path:
    """Incompressible data big enough that a backup takes a few seconds."""
    root.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(1 << 20)
    for i in range(size_mb // 50):
        with open(root / f"f{i}.bin", "wb") as fh:
            for j in range(50):
                fh.write(bytes([j, i]) + chunk[2:])
    return root


@dataclass
class Recorder:
    """Collects job events the way the agent would receive them."""

    started_jobs: list[Job] = field(default_factory=list)
    lines: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    progress_: dict[str, list[tuple[float, Progress]]] = field(default_factory=dict)
    results: dict[str, JobResult] = field(default_factory=dict)
    reports: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def started(self, job: Job) -> None:
        self.started_jobs.append(job)
        self.changed.set()

    def log(self, job: Job, stream: str, text: str) -> None:
        self.lines.setdefault(job.job_id, []).append((stream, text))
        self.changed.set()

    def progress(self, job: Job, progress: Progress) -> None:
        self.progress_.setdefault(job.job_id, []).append((time.monotonic(), progress))
        self.changed.set()

    def finished(self, job: Job, result: JobResult) -> None:
        self.results[job.job_id] = result
        self.changed.set()

    def report(self, type_: str, payload: dict[str, Any]) -> None:
        self.reports.append((type_, payload))

    def text(self, job_id: str) -> str:
        return "\n".join(t for _, t in self.lines.get(job_id, []))

    async def wait_for(self, cond: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("condition not met before the deadline")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def creds_for(repo: Path | str, password: str = PASSWORD, **kw: Any) -> RepoCredentials:
    return RepoCredentials(url=str(repo), password=password, **kw)


def no_bandwidth() -> Bandwidth:
    return Bandwidth()
