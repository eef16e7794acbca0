"""Agent overhead: an agent-driven backup vs a bare `restic backup` of the same data.

Starts a real rm-server and rm-agent, then for each round backs up the same data set
into two fresh repositories: once with bare restic, once as an rm-agent job (timed from
the job's start to the "snapshot saved" line the agent logs, i.e. the agent's restic
run with its output parsing, redaction and outbox writes). Prints a table with the
median ratio (target <= 1.03) and the agent's idle RSS (target <= 45 MB), and writes
bench/results/agent_overhead.json.

    python bench/agent_overhead.py [--size-mb 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness import (PASSWORD, RESTIC, Rig, init_repo, interleaved, password_file, restic_env, restic_version, timed,
                     wait, write_results)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def private_kb(pid: int) -> int:
    """USS: memory only this process holds (RSS minus shared library pages)."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rm-bench-"))
    try:
        data = work / "data"
        data.mkdir()
        files = max(1, args.size_mb // 4)
        for i in range(files):
            (data / f"f{i:04d}.bin").write_bytes(os.urandom(4 << 20))
        pw = password_file(work)
        first = work / "agent-repo-0"
        init_repo(first, pw, work / "cache-agent-0")
        with Rig(work, first) as rig:
            api, host_id = rig.api, rig.host_id
            wait(lambda: any(j["state"] == "succeeded"
                             for j in api.call("GET", f"/jobs?host_id={host_id}&kind=init")[1]["jobs"]),
                 60, "init job")
            # idle: connected, nothing running; let start-up garbage settle
            time.sleep(2)  # measurement settle time, not synchronisation
            assert rig.agent is not None
            idle_rss_mb = rss_kb(rig.agent.pid) / 1024
            idle_uss_mb = private_kb(rig.agent.pid) / 1024
            status, group = api.call("POST", f"/hosts/{host_id}/source-groups",
                                     {"name": "bench", "includes": [str(data)], "tag": "bench",
                                      "retention": {"keep_last": 1}})
            assert status == 201, group
            whole_job: list[float] = []

            def bare(r: int) -> float:
                bare_repo = work / f"bare-repo-{r}"
                init_repo(bare_repo, pw, work / f"cache-bare-{r}")
                return timed(lambda: subprocess.run(
                    [RESTIC, "backup", "--json", "--tag", "bench", str(data)],
                    env=restic_env(bare_repo, pw, work / f"cache-bare-{r}"), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True))

            def agent(r: int) -> float:
                # point the host at a fresh repository, run the group; timed from the job's start to
                # the "snapshot saved" line the agent logs
                agent_repo = work / f"agent-repo-{r + 1}"
                init_repo(agent_repo, pw, work / f"cache-agent-{r + 1}")
                api.call("PUT", f"/hosts/{host_id}/repo", {"url": str(agent_repo), "password": PASSWORD})
                _, body = api.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
                job = api.job_done(body["job"]["id"], 600, "agent backup")
                assert job["state"] == "succeeded", job
                lines = api.call("GET", f"/jobs/{job['id']}/logs?limit=10000")[1]["lines"]
                # "snapshot 1a2b3c4d saved · 64 files: ..." (rm_core.humanize.backup_summary)
                saved = next(ln for ln in lines if ln["text"].startswith("snapshot ") and " saved" in ln["text"])
                started = datetime.fromisoformat(job["started_at"])
                whole_job.append((datetime.fromisoformat(job["finished_at"]) - started).total_seconds())
                return (datetime.fromisoformat(saved["ts"]) - started).total_seconds()

            bare_s, agent_s = interleaved(args.rounds, bare, agent)
        rows = [{"round": r + 1, "bare_s": b, "agent_backup_s": a, "agent_job_s": j, "ratio": a / b}
                for r, (b, a, j) in enumerate(zip(bare_s, agent_s, whole_job))]
        ratio = statistics.median(r["ratio"] for r in rows)
        print(f"{'round':>5} {'bare restic s':>14} {'agent backup s':>15} {'ratio':>7} {'whole job s':>12}")
        for r in rows:
            print(f"{r['round']:>5} {r['bare_s']:>14.2f} {r['agent_backup_s']:>15.2f} {r['ratio']:>7.3f} "
                  f"{r['agent_job_s']:>12.2f}")
        print(f"median ratio {ratio:.3f} (target <= 1.03)   agent idle RSS {idle_rss_mb:.1f} MB "
              f"(target <= 45 MB; private/USS {idle_uss_mb:.1f} MB)")
        print("whole job = backup plus the snapshots/stats refresh the agent runs afterwards")
        write_results("agent_overhead", {
            "size_mb": files * 4, "rounds": rows, "median_ratio": ratio, "ratio_target": 1.03,
            "idle_rss_mb": idle_rss_mb, "idle_uss_mb": idle_uss_mb, "rss_target_mb": 45,
            "restic": restic_version(),
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
