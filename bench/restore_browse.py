"""Browsing a snapshot: one directory listed through rm-server (REST -> agent -> restic ls ->
back) vs bare `restic ls --json` of the same directory.

Builds a tree of --files files (default 100,000: 100 directories of 1,000), backs it up
with bare restic, starts a real rm-server and rm-agent on that repository, then for each
round lists the top directory (100 entries) and one leaf directory (1,000 entries) both
ways, interleaved, caches warm. Prints the median ratio per directory (target <= 1.2) and writes
bench/results/restore_browse.json.

    python bench/restore_browse.py [--files 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from harness import (RESTIC, Rig, init_repo, interleaved, password_file, restic_env, restic_version, spread, timed,
                     write_results)


def make_tree(root: Path, files: int) -> list[Path]:
    per_dir = 1000
    dirs = []
    for d in range(max(1, files // per_dir)):
        sub = root / f"d{d:03d}"
        sub.mkdir(parents=True)
        for i in range(per_dir):
            (sub / f"file-{i:05d}.txt").write_text(f"{d}/{i}\n")
        dirs.append(sub)
    return dirs


@dataclass
class Snapshot:
    """A tree of `files` small files backed up by bare restic (tag "bench") into a fresh repository."""

    data: Path
    dirs: list[Path]
    repo: Path
    env: dict[str, str]  # bare restic's environment for that repository (its own cache)
    snapshot_id: str
    backup_s: float


def build_snapshot(work: Path, files: int) -> Snapshot:
    data = work / "data"
    dirs = make_tree(data, files)
    pw = password_file(work)
    repo, cache = work / "repo", work / "cache-bare"
    init_repo(repo, pw, cache)
    env = restic_env(repo, pw, cache)
    t0 = time.monotonic()
    subprocess.run([RESTIC, "backup", "--tag", "bench", str(data)], env=env, stdin=subprocess.DEVNULL,
                   capture_output=True, check=True)
    backup_s = time.monotonic() - t0
    snaps = json.loads(subprocess.run([RESTIC, "snapshots", "--json"], env=env, capture_output=True,
                                      check=True).stdout)
    return Snapshot(data, dirs, repo, env, snaps[0]["id"], backup_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rm-bench-browse-"))
    try:
        built = build_snapshot(work, args.files)
        env, snap = built.env, built.snapshot_id
        with Rig(work, built.repo, agent_env=env) as rig:
            cases = {f"top ({len(built.dirs):,} entries)": built.data,
                     "leaf (1,000 entries)": built.dirs[len(built.dirs) // 2]}
            rows = []
            for name, path in cases.items():
                def bare() -> None:
                    subprocess.run([RESTIC, "ls", "--json", snap, str(path)], env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

                def served() -> None:
                    status, body = rig.api.call("GET", f"/hosts/{rig.host_id}/snapshots/{snap}/ls"
                                                       f"?path={quote(str(path))}&limit=5000")
                    assert status == 200 and not body["truncated"], (status, body)

                bare()
                served()  # warm both caches
                bare_t, served_t = interleaved(args.rounds, lambda r: timed(bare), lambda r: timed(served))
                b, s = statistics.median(bare_t), statistics.median(served_t)
                rows.append({"directory": name, "bare_restic_s": b, "server_s": s, "ratio": s / b,
                             "bare_spread": spread(bare_t), "server_spread": spread(served_t)})
        print(f"{args.files:,} files in the snapshot (backup took {built.backup_s:.1f} s); "
              f"median of {args.rounds} rounds")
        print(f"{'directory':<22} {'bare restic ls s':>17} {'through server s':>17} {'ratio':>7}")
        for r in rows:
            print(f"{r['directory']:<22} {r['bare_restic_s']:>17.3f} {r['server_s']:>17.3f} {r['ratio']:>7.3f}")
        print("target: ratio <= 1.2")
        write_results("restore_browse", {"files": args.files, "rounds": args.rounds, "rows": rows, "ratio_target": 1.2,
                                          "restic": restic_version()})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
