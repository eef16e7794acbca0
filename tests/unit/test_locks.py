"""The zipapps are built from committed locks (packaging/locks/, scripts/lock), and the locks
are current: each was written from pyproject.toml's requirement lines as they are now, and
each of those lines is met by the lock's pins. Offline and deterministic: what PyPI released
since does not matter (a lock keeps its pins until someone runs scripts/lock --upgrade), and
pip refuses at build time a lock that lacks a dependency (--require-hashes)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("build_zipapp", ROOT / "scripts/lib/build_zipapp.py")
build = importlib.util.module_from_spec(spec)
sys.modules["build_zipapp"] = build
spec.loader.exec_module(build)

HEADER = "# from pyproject.toml: "
TARGETS = [(app, version) for app in build.ORDER for version in build.APPS[app][3]]


def pins(text: str) -> dict[str, str]:
    return {canonicalize_name(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


def problems(app: str, version: str, text: str, wanted: list[str]) -> list[str]:
    """Why this lock is not current for `wanted` (pyproject.toml's lines for the app)."""
    found = []
    made_from = [line[len(HEADER):] for line in text.splitlines() if line.startswith(HEADER)]
    if made_from != wanted:
        found.append(f"written from {made_from}, pyproject.toml now says {wanted}")
    pinned = pins(text)
    env = {"python_version": version, "python_full_version": f"{version}.0", "sys_platform": "linux",
           "platform_system": "Linux", "implementation_name": "cpython", "platform_python_implementation": "CPython",
           "os_name": "posix", "platform_machine": "x86_64"}
    for line in wanted:
        req = Requirement(line)
        if req.marker and not req.marker.evaluate(env):
            continue
        have = pinned.get(canonicalize_name(req.name))
        if have is None:
            found.append(f"{req.name} is not pinned")
        elif not req.specifier.contains(have, prereleases=True):
            found.append(f"{req.name}=={have} does not meet {req.specifier}")
    if "--hash=sha256:" not in text:
        found.append("no hashes: pip could not check what it downloads")
    return found


@pytest.mark.parametrize("app, version", TARGETS, ids=[f"{a}-{v}" for a, v in TARGETS])
def test_each_build_has_a_current_lock(app, version):
    lock = build.lock_path(app, version)
    assert lock.exists(), f"no {lock.relative_to(ROOT)}: run scripts/lock"
    wanted = build.requirements(build.APPS[app][2])
    assert problems(app, version, lock.read_text(), wanted) == [], "run scripts/lock (docs/development.md)"


def test_no_lock_is_left_that_no_build_uses():
    wanted = {build.lock_path(app, version) for app, version in TARGETS}
    assert sorted(set(build.LOCKS.glob("*.txt")) - wanted) == []


def test_the_check_sees_a_changed_requirement_and_an_unmet_pin():
    text = build.lock_path("rm-agent", "3.11").read_text()
    wanted = build.requirements(build.APPS["rm-agent"][2])
    raised = [("aiohttp>=99" if w.startswith("aiohttp") else w) for w in wanted]
    found = problems("rm-agent", "3.11", text, raised)
    assert any("pyproject.toml now says" in f for f in found) and any("does not meet >=99" in f for f in found)
    added = wanted + ["psycopg[binary]>=3.2"]
    assert "psycopg is not pinned" in problems("rm-agent", "3.11", text, added)
