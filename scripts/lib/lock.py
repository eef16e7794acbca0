"""Write the locks the zipapps are built from: packaging/locks/<app>-py<X.Y>.txt, one per app
and Python it is built for, with every package pinned and hashed (scripts/lock).

Resolved with `uv pip compile` for each target Python and for the wheels the build accepts
(glibc 2.28, x86_64 or this machine's arch): uv resolves for a Python it is not running
under, so one machine writes every lock, and it keeps a pin already in a lock while it still
satisfies pyproject.toml, so re-running after adding a dependency moves only what must move.
`--upgrade` takes the newest releases instead. Each lock starts with the pyproject.toml
lines it was made from; tests/unit/test_locks.py checks they are still those lines."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_zipapp import APPS, LOCKS, ORDER, lock_path, requirements  # noqa: E402

HEADER = "# from pyproject.toml: "
TARGET = f"{platform.machine()}-manylinux_2_28"


def lock_one(app: str, version: str, upgrade: bool) -> Path:
    deps = requirements(APPS[app][2])
    out = lock_path(app, version)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "requirements.in"
        source.write_text("\n".join(deps) + "\n")
        result = Path(tmp) / "lock.txt"
        if out.exists() and not upgrade:  # uv keeps these pins while they still fit
            result.write_text(out.read_text())
        cmd = [sys.executable, "-m", "uv", "pip", "compile", str(source), "-o", str(result), "--quiet",
               "--python-version", version, "--python-platform", TARGET, "--only-binary", ":all:",
               "--generate-hashes", "--no-header", "--no-annotate"]
        if upgrade:
            cmd.append("--upgrade")
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "UV_NO_CONFIG": "1"})
        if done.returncode != 0:
            raise SystemExit(f"lock: {app} on Python {version}: {done.stderr.strip()[-3000:]}")
        body = result.read_text()
    header = [f"# {app} on Python {version} ({TARGET} wheels): written by scripts/lock, do not edit."]
    header += [HEADER + d for d in deps]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(header) + "\n" + body)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upgrade", action="store_true", help="take the newest releases pyproject.toml allows")
    args = ap.parse_args()
    wanted = {lock_path(app, v) for app in ORDER for v in APPS[app][3]}
    for stale in sorted(set(LOCKS.glob("*.txt")) - wanted):
        stale.unlink()
        print(f"removed {stale.relative_to(LOCKS.parents[1])} (no build uses it)")
    for app in ORDER:
        for version in APPS[app][3]:
            out = lock_one(app, version, args.upgrade)
            pins = sum(1 for line in out.read_text().splitlines() if "==" in line and not line.startswith("#"))
            print(f"{out.relative_to(LOCKS.parents[1])}: {pins} packages")


if __name__ == "__main__":
    main()
