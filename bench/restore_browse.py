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
from pathlib import Path
from urllib.parse import quote

from agent_overhead import BIN, PASSWORD, RESTIC, RESULTS, Api, free_port, init_repo, restic_env, wait


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


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rm-bench-browse-"))
    procs: list[subprocess.Popen] = []
    try:
        data = work / "data"
        dirs = make_tree(data, args.files)
        pw = work / "pw"
        pw.write_text(PASSWORD)
        pw.chmod(0o600)
        repo, cache = work / "repo", work / "cache-bare"
        init_repo(repo, pw, cache)
        env = restic_env(repo, pw, cache)
        t0 = time.monotonic()
        subprocess.run([RESTIC, "backup", "--tag", "bench", str(data)], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, check=True)
        backup_s = time.monotonic() - t0
        snaps = json.loads(subprocess.run([RESTIC, "snapshots", "--json"], env=env, capture_output=True,
                                          check=True).stdout)
        snap = snaps[0]["id"]

        port = free_port()
        server_log = open(work / "server.log", "w")
        procs.append(subprocess.Popen([str(BIN / "rm-server"), "serve", "--data-dir", str(work / "server"),
                                       "--listen", f"127.0.0.1:{port}"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=server_log))
        api = Api(f"http://127.0.0.1:{port}")
        wait(lambda: (work / "server" / "bootstrap-token").exists() and
             "listening" in (work / "server.log").read_text(), 30, "server")
        token = (work / "server" / "bootstrap-token").read_text().strip()
        api.call("POST", "/auth/bootstrap", {"token": token, "username": "admin", "password": "bench password 123"})
        api.token = api.call("POST", "/auth/login", {"username": "admin", "password": "bench password 123"})[1]["token"]
        _, tok = api.call("POST", "/enrollment-tokens", {"repo": {"url": str(repo), "password": PASSWORD}})
        cfg = work / "agent" / "agent.json"
        subprocess.run([str(BIN / "rm-agent"), "enroll", "--server", api.url, "--token", tok["token"],
                        "--config", str(cfg)], check=True, capture_output=True)
        host_id = json.loads(cfg.read_text())["host_id"]
        agent_log = open(work / "agent.log", "w")
        procs.append(subprocess.Popen([str(BIN / "rm-agent"), "run", "--config", str(cfg)], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=agent_log,
                                      env={**env, "XDG_CACHE_HOME": str(work / "agent-cache")}))
        wait(lambda: api.call("GET", f"/hosts/{host_id}")[1].get("status") == "online", 30, "agent online")

        cases = {f"top ({len(dirs):,} entries)": data, "leaf (1,000 entries)": dirs[len(dirs) // 2]}
        rows = []
        for name, path in cases.items():
            def bare() -> None:
                subprocess.run([RESTIC, "ls", "--json", snap, str(path)], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

            def served() -> None:
                status, body = api.call("GET", f"/hosts/{host_id}/snapshots/{snap}/ls?path={quote(str(path))}"
                                               f"&limit=5000")
                assert status == 200 and not body["truncated"], (status, body)

            bare()
            served()  # warm both caches
            bare_t, served_t = [], []
            for r in range(args.rounds):  # interleaved, alternating who goes first: load drifts on a shared box
                first, second = (bare, served) if r % 2 == 0 else (served, bare)
                t1, t2 = timed(first), timed(second)
                bare_t.append(t1 if first is bare else t2)
                served_t.append(t2 if first is bare else t1)
            b, s = statistics.median(bare_t), statistics.median(served_t)
            rows.append({"directory": name, "bare_restic_s": b, "server_s": s, "ratio": s / b})
        print(f"{args.files:,} files in the snapshot (backup took {backup_s:.1f} s); median of {args.rounds} rounds")
        print(f"{'directory':<22} {'bare restic ls s':>17} {'through server s':>17} {'ratio':>7}")
        for r in rows:
            print(f"{r['directory']:<22} {r['bare_restic_s']:>17.3f} {r['server_s']:>17.3f} {r['ratio']:>7.3f}")
        print("target: ratio <= 1.2")
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "restore_browse.json").write_text(json.dumps({
            "files": args.files, "rounds": args.rounds, "rows": rows, "ratio_target": 1.2,
            "restic": subprocess.run([RESTIC, "version"], capture_output=True, text=True).stdout.strip(),
        }, indent=2))
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
