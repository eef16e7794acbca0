"""Restore drill overhead: a drill run as a real rm-agent job vs bare `restic restore --verify`
of the same sample.

Builds the 100,000-file snapshot of restore_browse.py (100 directories of 1,000 small files,
backed up with bare restic, tag "bench"), starts a real rm-server and rm-agent on that
repository, gives it a source group with that tag and a drill policy, then per round runs
one drill (POST .../drill/run; timed from the job's started_at to its finished_at, the
agent's own clock: latest snapshot, listing, sampling, restore --verify, SHA-256 compare,
temp dir removed) and one bare `restic restore SNAP --target T --verify --include P...` with
exactly the include patterns of the sample the previous drill drew (read from its job log),
and one bare recursive `restic ls --json` of the snapshot (the walk any drill needs to see the
snapshot's files), interleaved, caches warm. Prints min/median/max of each, the ratio of the
medians (target <= 1.1), the floor a listing drill cannot go below, and what the product adds
per round; writes bench/results/restore_drill.json (restore_drill.quick.json with --quick).

    .venv/bin/python bench/restore_drill.py [--files 100000] [--rounds 5] [--sample-files 20]
    .venv/bin/python bench/restore_drill.py --quick      # 2,000 files, 2 rounds: a smoke run
    RM_BENCH_RESTIC=/path/to/restic-0.18 .venv/bin/python bench/restore_drill.py
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from harness import RESTIC, Rig, interleaved, restic_version, spread, timed, write_results
from restore_browse import build_snapshot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rm_core.restore import include_pattern  # noqa: E402

SAMPLE_NOTE = "drill sample: "


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sample-files", type=int, default=20)
    ap.add_argument("--sample-mb", type=int, default=64)
    ap.add_argument("--poll", type=float, default=1.0,
                    help="seconds between polls of the drill job (the job is timed by its own timestamps; "
                         "polling every 50 ms cost CPU the drill competed for)")
    ap.add_argument("--quick", action="store_true", help="2,000 files, 2 rounds (smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.files, args.rounds = 2_000, 2
    work = Path(tempfile.mkdtemp(prefix="rm-bench-drill-"))
    try:
        built = build_snapshot(work, args.files)
        with Rig(work, built.repo, agent_env=built.env) as rig:
            api, host_id = rig.api, rig.host_id
            status, group = api.call("POST", f"/hosts/{host_id}/source-groups", {
                "name": "bench", "includes": [str(built.data)], "tag": "bench", "retention": {"keep_last": 1}})
            assert status == 201, group
            drill_path = f"/hosts/{host_id}/source-groups/{group['id']}/drill"
            status, body = api.call("PUT", drill_path, {"sample_files": args.sample_files,
                                                        "sample_mb": args.sample_mb})
            assert status == 200, body
            samples: list[list[str]] = []
            jobs: list[dict] = []

            def drill(r: int) -> float:
                status, body = api.call("POST", drill_path + "/run")
                assert status == 202, body
                job = api.job_done(body["id"], 600, "drill", args.poll)
                assert job["state"] == "succeeded", job
                lines = api.call("GET", f"/jobs/{job['id']}/logs?limit=10000")[1]["lines"]
                sample = [ln["text"].split(SAMPLE_NOTE, 1)[1] for ln in lines if SAMPLE_NOTE in ln["text"]]
                assert len(sample) == job["summary"]["files"], (sample, job["summary"])
                samples.append(sample)
                started = datetime.fromisoformat(job["started_at"])
                # the first note comes once the sample is drawn: latest snapshot + listing + sampling
                drawn = next(ln for ln in lines if "drill of snapshot" in ln["text"])
                phases = job["summary"]["phases"]  # the agent's own monotonic clock, per phase of this job
                jobs.append({"job_s": (datetime.fromisoformat(job["finished_at"]) - started).total_seconds(),
                             "sample_drawn_s": (datetime.fromisoformat(drawn["ts"]) - started).total_seconds(),
                             "agent_duration_s": job["summary"]["duration"], "files": job["summary"]["files"],
                             "phases": phases,
                             "restore_phase_s": sum(phases[k] for k in ("prepare", "restore", "compare", "cleanup"))})
                return jobs[-1]["job_s"]

            def bare(r: int) -> float:
                target = work / f"bare-restore-{r}"
                argv = [RESTIC, "restore", built.snapshot_id, "--target", str(target), "--verify"]
                for path in samples[-1]:
                    argv += ["--include", include_pattern(path)]
                try:
                    return timed(lambda: subprocess.run(argv, env=built.env, stdin=subprocess.DEVNULL,
                                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                        check=True))
                finally:
                    shutil.rmtree(target, ignore_errors=True)

            def bare_ls(r: int) -> float:
                # the walk any drill pays to see the snapshot's files: the floor of its listing
                argv = [RESTIC, "--no-lock", "ls", "--json", "latest", "--tag", "bench"]
                return timed(lambda: subprocess.run(argv, env=built.env, stdin=subprocess.DEVNULL,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True))

            drill(-1)
            bare(-1)  # warm both caches (the agent's and bare restic's)
            del jobs[:]
            bare_s, drill_s, ls_s = interleaved(args.rounds, bare, drill, bare_ls)
        b, d, ls = spread(bare_s), spread(drill_s), spread(ls_s)
        ours = [dr - ba - li for dr, ba, li in zip(drill_s, bare_s, ls_s)]
        ratio = d["median"] / b["median"]
        sample_s = spread([j["phases"]["sample"] for j in jobs])
        rphase_s = [j["restore_phase_s"] for j in jobs]
        rphase, rrestic = spread(rphase_s), spread([j["phases"]["restore"] for j in jobs])
        # per round: the drill's restore phase against the bare restore of the same includes
        phase_ratios = [rp / ba for rp, ba in zip(rphase_s, bare_s)]
        phase_ratio = rphase["median"] / b["median"]
        version = restic_version()
        print(f"{version}; {args.files:,} files in the snapshot (backup took {built.backup_s:.1f} s); "
              f"sample {args.sample_files} files / {args.sample_mb} MB; {args.rounds} rounds")
        rows = [("bare restic ls --json (recursive)", ls), ("drill: sample (ls + drawing)", sample_s),
                ("bare restic restore --verify", b), ("drill: restore phase (all)", rphase),
                ("  of which restic restore", rrestic),
                ("drill job (started -> finished)", d)]
        for phase_name in ("prepare", "compare", "cleanup"):
            rows.append((f"  drill {phase_name}", spread([j["phases"][phase_name] for j in jobs])))
        print(f"{'':<36} {'min s':>7} {'median s':>9} {'max s':>7}")
        for name, row in rows:
            print(f"{name:<36} {row['min']:>7.3f} {row['median']:>9.3f} {row['max']:>7.3f}")
        print(f"restore phase / bare restore: medians {phase_ratio:.3f} (target <= 1.1); per round "
              + ", ".join(f"{x:.2f}" for x in phase_ratios))
        print(f"end to end: drill / bare restore, medians {ratio:.3f}; floor with one restic ls "
              f"(bare ls + bare restore) / bare restore = {(ls['median'] + b['median']) / b['median']:.3f}")
        print(f"drill - bare restore - bare ls, per round (what the product adds): "
              + ", ".join(f"{x:+.2f}" for x in ours) + " s")
        write_results("restore_drill", {
            "files": args.files, "rounds": args.rounds, "sample_files": args.sample_files,
            "sample_mb": args.sample_mb, "poll_s": args.poll, "bare_s": bare_s, "drill_s": drill_s, "bare_ls_s": ls_s,
            "drills": jobs, "bare": b, "drill": d, "bare_ls": ls, "product_adds_s": ours, "ratio": ratio,
            "restore_phase": rphase, "restic_restore_in_drill": rrestic, "sample": sample_s,
            "restore_phase_ratio": phase_ratio, "restore_phase_ratios": phase_ratios, "ratio_target": 1.1, "restic": version,
        }, quick=args.quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
