"""Build self-contained zipapps of rm-agent and rm-server (rm-server carries rm-agent).

Compiled dependencies (pydantic-core, aiohttp's speedups, multidict…) cannot be imported from
inside a zip and differ per Python version, so each archive holds one package set per
supported interpreter, resolved by pip running *under that interpreter* (so environment
markers such as aiohttp's `async-timeout; python_version < "3.11"` resolve correctly — pip's
`--python-version` would evaluate them for the build interpreter instead). Identical files
(pure-Python packages, cryptography's abi3 wheel, our own code) are stored once. At run time
the archive unpacks the set matching the running interpreter once into a cache directory
keyed by the archive's content — what pex does with several `--python`, in a page of code
the server's archive shares with the agent's, with no build dependency beyond pip.

What pip installs is the committed lock of that app and Python (packaging/locks/, written by
scripts/lock): every package pinned and hashed, so one commit always ships the same bytes."""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIP_CACHE = ROOT / ".cache" / "pip"
LOCKS = ROOT / "packaging" / "locks"
SITE_CACHE = ROOT / ".cache" / "zipapp-sites"

# Wheels for glibc 2.28 and older only (Debian 10+, Ubuntu 18.10+, RHEL 8+), whatever this
# machine's glibc: left to itself pip would pick manylinux_2_34 builds that Debian 11 cannot load.
PLATFORMS = [f"{tag}_{platform.machine()}" for tag in (
    "manylinux_2_28", "manylinux_2_17", "manylinux2014", "manylinux_2_12", "manylinux2010", "manylinux_2_5",
    "manylinux1")]
AGENT_PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
SERVER_PYTHONS = ["3.11", "3.12", "3.13"]
# rm-tui's own: in neither file. The server file takes every other dependency of
# pyproject.toml, so adding one to the server is: add it there, run scripts/lock.
CONSOLE_ONLY = {"textual"}
APPS = {
    # name: (entry module, packages copied from the tree, distributions it needs (None: all
    # but the console's), Python versions). The agent's list is kept short on purpose.
    "rm-agent": ("rm_agent.cli", ["rm_core", "rm_agent"],
                 {"aiohttp", "croniter", "pydantic", "cryptography", "click", "eval_type_backport"}, AGENT_PYTHONS),
    "rm-server": ("rm_server.cli", ["rm_core", "rm_server"], None, SERVER_PYTHONS),
}


def _dist(requirement: str) -> str:
    return re.split(r"[ <>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("-", "_")


def requirements(names: set[str] | None) -> list[str]:
    """pyproject.toml's requirement lines (versions and markers) for these distributions
    (None: every one but the console's)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    if names is None:
        return [d for d in deps if _dist(d) not in CONSOLE_ONLY]
    out = [d for d in deps if _dist(d) in names]
    assert len(out) == len(names), f"pyproject.toml lacks some of {sorted(names)}"
    return out


def lock_path(app: str, version: str) -> Path:
    return LOCKS / f"{app}-py{version}.txt"


# Built first: rm-server embeds it as rm_server/install/rm-agent.pyz and serves it to hosts.
ORDER = ["rm-agent", "rm-server"]

# Runs on whatever python3 a host has, so it must parse on old ones to say what is wrong.
MAIN = '''\
"""Unpack the packages for this Python from this archive once, then run {name}."""
import hashlib, json, os, sys, zipfile

NAME, DIGEST, MODULE = {name!r}, {digest!r}, {module!r}


def _cache_base():
    if os.environ.get("RM_ZIPAPP_CACHE"):
        return os.environ["RM_ZIPAPP_CACHE"]
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "restic-manager")


def _site():
    archive = os.path.dirname(os.path.abspath(__file__))
    tag = "cp%d%d" % sys.version_info[:2]
    import glob
    if glob.glob("/lib/ld-musl-*.so.1"):
        sys.exit("%s: this file carries builds for glibc Linux; this system runs musl (Alpine)" % NAME)
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        if "sites/%s.json" % tag not in names:
            have = sorted((n[6:-5] for n in names if n.startswith("sites/") and n.endswith(".json")),
                          key=lambda t: int(t[3:]))
            sys.exit("%s: this file runs on Python %s; %s is Python %d.%d. Install one of those "
                     "(or point the wrapper at it) and run it again."
                     % (NAME, ", ".join("%s.%s" % (t[2], t[3:]) for t in have), sys.executable,
                        sys.version_info[0], sys.version_info[1]))
        base = _cache_base()
        target = os.path.join(base, "%s-%s-%s" % (NAME, DIGEST, tag))
        if os.path.exists(os.path.join(target, ".complete")):
            return target
        os.makedirs(base, mode=0o700, exist_ok=True)
        tmp = "%s.tmp%d" % (target, os.getpid())
        manifest = json.loads(zf.read("sites/%s.json" % tag))
        for rel, blob in manifest.items():
            dest = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as fh:
                fh.write(zf.read("blobs/" + blob))
        open(os.path.join(tmp, ".complete"), "w").close()
        try:
            os.rename(tmp, target)
        except OSError:  # another process unpacked it first
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    return target


sys.path.insert(0, _site())
main = __import__(MODULE, fromlist=["main"]).main
sys.exit(main())
'''


def find_python(version: str) -> str | None:
    """An interpreter of exactly `version`: this one, a pyenv one, or python3.X on PATH."""
    if "%d.%d" % sys.version_info[:2] == version:
        return sys.executable
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python"), reverse=True)
    candidates += [p for p in [shutil.which(f"python{version}")] if p]
    for cand in candidates:
        out = subprocess.run([cand, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip() == version:
            return cand
    return None


def resolve(python: str, lock: Path, target: Path) -> None:
    """pip under `python` itself, wheels only, exactly the lock's pins and hashes (pip checks
    every file against them, and refuses a dependency the lock lacks): markers and the ABI
    are that interpreter's (--platform changes only which glibc the wheels may need).
    A resolved set is kept in .cache/zipapp-sites, keyed by interpreter, lock and platforms,
    so a rebuild takes seconds."""
    if not lock.exists():
        raise SystemExit(f"build-zipapps: no lock {lock.relative_to(ROOT)}; run scripts/lock")
    version = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True).stdout
    key = hashlib.sha256(json.dumps([version, lock.read_text(), PLATFORMS]).encode()).hexdigest()[:16]
    cached = SITE_CACHE / key
    if not (cached / ".complete").exists():
        fresh = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=SITE_CACHE.mkdir(parents=True, exist_ok=True) or SITE_CACHE))
        out = subprocess.run(
            # --no-compile: the archive leaves __pycache__ out (each Python compiles what it
            # imports from the unpacked cache), so compiling here was a fifth of pip's CPU for nothing.
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-warn-script-location",
             "--no-compile", "--only-binary=:all:", *(f"--platform={p}" for p in PLATFORMS), "--cache-dir", str(PIP_CACHE),
             "--require-hashes", "--target", str(fresh), "-r", str(lock)],
            capture_output=True, text=True)
        if out.returncode != 0:
            shutil.rmtree(fresh, ignore_errors=True)
            raise SystemExit(f"build-zipapps: installing {lock.relative_to(ROOT)} with {python} failed:\n"
                             f"{out.stderr[-3000:]}")
        shutil.rmtree(fresh / "bin", ignore_errors=True)
        (fresh / ".complete").touch()
        try:
            os.rename(fresh, cached)
        except OSError:  # another build made the same set first: theirs is as good
            shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(cached, target, ignore=shutil.ignore_patterns(".complete", "__pycache__"))


def build(name: str, out_dir: Path, agent_pyz: Path | None = None) -> tuple[Path, list[str]]:
    module, pkgs, _, versions = APPS[name]
    pythons = {v: find_python(v) for v in versions}
    missing = [v for v, p in pythons.items() if p is None]
    if missing:
        print(f"build-zipapps: WARNING: no Python {', '.join(missing)} here; {name}.pyz will not run on "
              f"{'it' if len(missing) == 1 else 'them'}", file=sys.stderr)
    found = {v: p for v, p in pythons.items() if p}
    if not found:
        raise SystemExit(f"build-zipapps: none of Python {', '.join(versions)} is available to build {name}")
    blobs: dict[str, bytes] = {}
    manifests: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        def one(version: str) -> tuple[str, Path]:
            site = Path(tmp) / version
            resolve(found[version], lock_path(name, version), site)
            return version, site

        # Two at a time: pip is mostly waiting on the network or unzipping, and CI has 2 cores.
        with ThreadPoolExecutor(max_workers=2) as pool:
            sites = list(pool.map(one, sorted(found)))
        for version, site in sites:
            for pkg in pkgs:
                shutil.copytree(ROOT / pkg, site / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            if agent_pyz is not None:
                shutil.copyfile(agent_pyz, site / "rm_server" / "install" / "rm-agent.pyz")
            shutil.rmtree(site / "bin", ignore_errors=True)
            manifest = {}
            for f in sorted(p for p in site.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
                data = f.read_bytes()
                key = hashlib.sha256(data).hexdigest()
                blobs.setdefault(key, data)
                manifest[str(f.relative_to(site))] = key
            manifests["cp" + version.replace(".", "")] = manifest
    digest = hashlib.sha256(json.dumps(manifests, sort_keys=True).encode()).hexdigest()[:16]
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.pyz"
    # A name no other build uses: a test run and a manual build may write dist/ at once.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir)
    tmp_out = Path(tmp_name)
    try:
        with open(fd, "wb") as fh:
            fh.write(b"#!/usr/bin/env python3\n")
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("__main__.py", MAIN.format(name=name, module=module, digest=digest))
                for tag, manifest in sorted(manifests.items()):
                    zf.writestr(f"sites/{tag}.json", json.dumps(manifest, sort_keys=True))
                for key in sorted(blobs):
                    zf.writestr(f"blobs/{key}", blobs[key])
        tmp_out.chmod(0o755)
        os.replace(tmp_out, out)
    except BaseException:
        tmp_out.unlink(missing_ok=True)
        raise
    return out, sorted(found, key=lambda v: tuple(map(int, v.split("."))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("apps", nargs="*", metavar="APP", help=f"what to build: {', '.join(ORDER)} (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory (default: dist/)")
    args = ap.parse_args()
    unknown = [a for a in args.apps if a not in APPS]
    if unknown:
        ap.error(f"unknown app {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    wanted = [a for a in ORDER if a in (args.apps or ORDER)]
    agent = args.out / "rm-agent.pyz"
    if "rm-server" in wanted and "rm-agent" not in wanted and not agent.exists():
        wanted.insert(0, "rm-agent")  # the server carries the agent it hands out
    for name in wanted:
        out, versions = build(name, args.out, agent if name == "rm-server" else None)
        print(f"built {out} ({out.stat().st_size // 1024} KiB, Python {', '.join(versions)})")


if __name__ == "__main__":
    main()
