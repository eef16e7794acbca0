"""The agent on every Python it supports (3.9+): enroll, connect, one backup, for real.

The server runs on this test's interpreter (3.11+) with a self-signed certificate; the agent
runs from this source tree on another interpreter found by pyenv (or as `pythonX.Y` on PATH),
in a venv under .cache/agent-pythons holding only the agent's dependencies from pyproject.toml.
A missing interpreter, or a venv that cannot be installed (no package index), skips with why.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.e2e.test_agent_e2e import PASSWORD, E2EServer, Proc, Repo, init_done, job_end, make_group, wait_until
from tests.e2e.test_agent_e2e import e2e_server  # noqa: F401  (a fixture, used by name)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".cache" / "agent-pythons"
# what rm_core + rm_agent import; the server's and console's packages are not installed
AGENT_DISTRIBUTIONS = {"aiohttp", "croniter", "pydantic", "cryptography", "click", "eval_type_backport"}


def agent_requirements() -> list[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if re.split(r"[<>=!~;\s\[]", d, maxsplit=1)[0] in AGENT_DISTRIBUTIONS]


def find_interpreter(version: str) -> str | None:
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python"))
    return found[-1] if found else shutil.which(f"python{version}")


def agent_venv(version: str) -> Path:
    """A venv for `version` with the agent's dependencies (made once, remade when they change)."""
    interpreter = find_interpreter(version)
    if interpreter is None:
        pytest.skip(f"no Python {version} interpreter (pyenv install {version}, or python{version} on PATH)")
    reqs = agent_requirements()
    want = hashlib.sha256(json.dumps([interpreter, reqs]).encode()).hexdigest()
    venv = VENVS / f"py{version}"
    stamp = venv / ".rm-agent-deps"
    if stamp.exists() and stamp.read_text() == want:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True, timeout=300, capture_output=True)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          *reqs], capture_output=True, text=True, timeout=900)
    if pip.returncode != 0:
        pytest.skip(f"cannot install the agent's dependencies for Python {version}: {pip.stderr.strip()[-400:]}")
    stamp.write_text(want)
    return venv


@pytest.mark.parametrize("version", ["3.9", "3.10", "3.12", "3.13"])
async def test_agent_enrolls_connects_and_backs_up(version: str, e2e_server: E2EServer, tmp_path: Path) -> None:
    python = str(agent_venv(version) / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(ROOT)  # the agent from this source tree, nothing installed from it
    srv = e2e_server
    path = tmp_path / "repo"
    repo = Repo(str(path), {"url": str(path), "password": PASSWORD}, {"RESTIC_REPOSITORY": str(path)})

    status, tok = await srv.call("POST", "/enrollment-tokens", json={"name": f"py{version}", "repo": repo.creds})
    assert status == 201, tok
    config = tmp_path / "agent-state" / "agent.json"
    out = subprocess.run([python, "-m", "rm_agent.cli", "enroll", "--server", srv.url, "--token", tok["token"],
                          "--fingerprint", srv.fingerprint, "--config", str(config)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    host_id = json.loads(config.read_text())["host_id"]
    agent = Proc([python, "-m", "rm_agent.cli", "run", "--config", str(config)], env=env)
    try:
        async def online() -> bool:
            _, host = await srv.call("GET", f"/hosts/{host_id}")
            return host["status"] == "online"

        await wait_until(online, 60, f"agent on Python {version} online")
        await init_done(srv, host_id)
        src = tmp_path / "src"
        src.mkdir()
        (src / "note.txt").write_text(f"backed up by an agent on Python {version}\n")
        group = await make_group(srv, host_id, src)
        _, body = await srv.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
        job = await wait_until(lambda: job_end(srv, body["job"]["id"]), 60, "backup finished")
        assert job["state"] == "succeeded", (job, agent.lines[-20:])
        listed = json.loads(repo.restic(tmp_path, "snapshots", "--json").stdout)
        assert [s["short_id"] for s in listed] == [job["summary"]["snapshot_id"][:8]]
        version_line = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True,
                                      text=True, check=True).stdout
        assert version_line.startswith(version + "."), version_line
    finally:
        agent.kill(signal.SIGTERM)
    assert agent.p.returncode == 0, agent.lines[-20:]
