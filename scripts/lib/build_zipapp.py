"""Build self-contained zipapps of rm-server and rm-agent.

Compiled dependencies (pydantic-core, cryptography, aiohttp's speedups) cannot be imported
from inside a zip, so the archive carries its site-packages and unpacks them once into a
cache directory keyed by the archive's content hash — the approach shiv takes, in a page of
code instead of another build dependency."""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

APPS = {
    "rm-server": ("rm_server.cli", ["aiohttp", "aiosqlite", "croniter", "pydantic", "cryptography", "click", "bcrypt"]),
    "rm-agent": ("rm_agent.cli", ["aiohttp", "croniter", "pydantic", "cryptography", "click"]),
}

MAIN = '''\
"""Unpack this archive's packages once, then run {name}."""
import hashlib, os, sys, zipfile
from pathlib import Path

def _site():
    archive = Path(__file__).resolve().parent
    digest = {digest!r}
    base = Path(os.environ.get("RM_ZIPAPP_CACHE") or Path.home() / ".cache" / "restic-manager")
    target = base / ("{name}-" + digest)
    if not (target / ".complete").exists():
        tmp = base / ("{name}-" + digest + ".tmp" + str(os.getpid()))
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if member.startswith("site/"):
                    zf.extract(member, tmp)
        os.makedirs(base, exist_ok=True)
        try:
            os.replace(tmp / "site", target)
        except OSError:
            pass  # another process unpacked it first
        (target / ".complete").touch()
    return str(target)

sys.path.insert(0, _site())
from {module} import main
sys.exit(main())
'''


def build(name: str, out_dir: Path) -> Path:
    module, deps = APPS[name]
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--target", str(site), *deps], check=True)
        pkgs = ["rm_core", module.split(".")[0]]
        for pkg in pkgs:
            shutil.copytree(ROOT / pkg, site / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for junk in site.glob("*/__pycache__"):
            shutil.rmtree(junk)
        files = sorted(p for p in site.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        digest = hashlib.sha256()
        for f in files:
            digest.update(str(f.relative_to(site)).encode())
            digest.update(f.read_bytes())
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"{name}.pyz"
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("__main__.py", MAIN.format(name=name, module=module, digest=digest.hexdigest()[:16]))
            for f in files:
                zf.write(f, "site/" + str(f.relative_to(site)))
    with open(out, "r+b") as fh:
        body = fh.read()
        fh.seek(0)
        fh.write(b"#!/usr/bin/env python3\n" + body)
    out.chmod(0o755)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("apps", nargs="*", default=list(APPS), choices=list(APPS))
    ap.add_argument("--out", type=Path, default=ROOT / "dist")
    args = ap.parse_args()
    for name in args.apps:
        out = build(name, args.out)
        print(f"built {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
