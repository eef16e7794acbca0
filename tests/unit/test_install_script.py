"""install.sh's checks before it downloads anything: exact advice per distribution family."""

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "rm_server/install/install.sh"

FAMILIES = {
    "ID=debian\n": "apt-get install -y restic",
    'ID=ubuntu\nID_LIKE=debian\n': "apt-get install -y restic",
    'ID="rocky"\nID_LIKE="rhel centos fedora"\n': "dnf install -y restic (on RHEL and its rebuilds: dnf install -y epel-release first)",
    'ID="opensuse-leap"\nID_LIKE="suse opensuse"\n': "zypper install -y restic",
    "ID=alpine\n": "apk add restic",
}


def run(tmp_path: Path, *args: str, os_release: str = "ID=debian\n", with_restic: bool = False):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text(os_release)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    # Only what the checks use, so `restic` is found exactly when the test wants it.
    for tool in ["sed", "tr", "id", "cat"] + (["restic"] if with_restic else []):
        link = bin_dir / tool
        if not link.exists() and shutil.which(tool):
            link.symlink_to(shutil.which(tool))
    env = {"PATH": str(bin_dir), "RM_INSTALL_ROOT": str(root)}
    # As a server fills it in: an agent build to hand out, no restic of its own.
    script = tmp_path / "install.sh"
    script.write_text(SCRIPT.read_text().replace("@AGENT_SHA256@", "ab" * 32).replace("@RESTIC_SHA256@", ""))
    return subprocess.run(["/bin/sh", str(script), *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("os_release", FAMILIES)
def test_missing_restic_names_the_command_for_this_family(tmp_path, os_release):
    out = run(tmp_path, "--token", "t", "--python", sys.executable, os_release=os_release)
    assert out.returncode == 1
    assert f"restic is missing; install it with: {FAMILIES[os_release]} (or paste the install command again with " \
           "--install-restic after the token)" in out.stderr, out.stderr


def test_missing_restic_on_an_unknown_distribution_points_to_restic_itself(tmp_path):
    out = run(tmp_path, "--token", "t", "--python", sys.executable, os_release="ID=plan9\n")
    assert out.returncode == 1
    assert "restic is missing, and @SERVER@ has no restic to hand out: install restic 0.14+ yourself " \
           "(https://github.com/restic/restic/releases), or ask the server's admin" in out.stderr, out.stderr


def test_too_old_python_is_refused_with_advice(tmp_path):
    old = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8.*/bin/python")))
    if not old:
        pytest.skip("no Python 3.8 here to try with")
    out = run(tmp_path, "--token", "t", "--python", old[-1], os_release='ID="rhel"\nID_LIKE="fedora"\n')
    assert out.returncode == 1
    assert "is Python 3.8; rm-agent needs 3.9 or newer: dnf install -y python3" in out.stderr, out.stderr
    assert "dnf install -y python39" in out.stderr


def test_missing_python_is_named(tmp_path):
    out = run(tmp_path, "--token", "t", os_release="ID=alpine\n")
    assert out.returncode == 1 and "python3 is missing; install it: apk add python3" in out.stderr, out.stderr


@pytest.mark.parametrize("args,message", [
    (["--frobnicate"], "unknown option --frobnicate"),
    (["--token"], "--token needs a value"),
    (["--purge"], "--purge goes with --uninstall"),
    (["--wait", "soon"], "--wait takes a number of seconds"),
])
def test_bad_options_are_named(tmp_path, args, message):
    out = run(tmp_path, *args)
    assert out.returncode == 1 and message in out.stderr, out.stderr


def test_help(tmp_path):
    out = run(tmp_path, "--help")
    assert out.returncode == 0 and "--uninstall [--purge]" in out.stdout
