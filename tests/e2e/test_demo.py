"""The newcomer's first command must work: scripts/demo --check, end to end."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


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
    assert not (tmp_path / "demo" / "server" / "bootstrap-token").exists(), "an admin exists: no bootstrap token left"


@pytest.mark.e2e
def test_demo_without_console_runs_until_ctrl_c_then_stops_everything(tmp_path):
    import signal
    import time

    env = {**os.environ, "RM_DEMO_DIR": str(tmp_path / "demo"), "RM_DEMO_PORT": str(free_port()),
           "RM_VENV": str(Path(sys.executable).parent.parent)}
    proc = subprocess.Popen([str(ROOT / "scripts/demo"), "--no-tui"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "Ctrl-C stops the demo" in line:
                break
        text = "".join(seen)
        assert "demo: backup succeeded" in text and "Ctrl-C stops the demo" in text, text[-3000:]
        assert f"the password stays in {tmp_path / 'demo' / 'admin-password'}" in text
        # What a terminal does on Ctrl-C: SIGINT to the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # polling for the processes to be gone, with a deadline
        left = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True).stdout
        if not left:
            break
        time.sleep(0.1)
    assert left == "", "Ctrl-C must stop the server and the agent too"
