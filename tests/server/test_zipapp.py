"""Admins run rm-server as one file: the zipapp must build and start."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_server_zipapp_builds_and_runs(tmp_path):
    build = subprocess.run([sys.executable, str(ROOT / "scripts/lib/build_zipapp.py"), "rm-server", "--out",
                            str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    pyz = tmp_path / "rm-server.pyz"
    env = {**os.environ, "RM_ZIPAPP_CACHE": str(tmp_path / "cache"), "PYTHONPATH": ""}
    # -I -S: no site-packages at all (not even the venv's), so the archive must carry everything.
    out = subprocess.run([sys.executable, "-I", "-S", str(pyz), "version"], capture_output=True, text=True,
                         timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("rm-server ")
