"""The newcomer's first command must work: scripts/demo --check, end to end."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
def test_demo_runs_a_first_backup(tmp_path):
    env = {**os.environ, "RM_DEMO_DIR": str(tmp_path / "demo"), "RM_DEMO_PORT": str(free_port()),
           "RM_VENV": str(Path(sys.executable).parent.parent)}
    out = subprocess.run([str(ROOT / "scripts/demo"), "--check"], capture_output=True, text=True, timeout=300,
                         env=env, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "demo: backup succeeded" in out.stdout, out.stdout
    assert "sign in as: admin / " in out.stdout
    assert not (tmp_path / "demo" / "agent.pid").exists(), "the demo stops its agent and says so"
    left = subprocess.run(["pgrep", "-f", f"rm-agent run --config {tmp_path}"], capture_output=True, text=True)
    assert left.stdout == "", "the demo's agent must stop with the demo"
