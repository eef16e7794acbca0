"""The anomaly tell on synthetic backup histories: false positives on normal runs with noise,
detection of injected attacks (docs/benchmarks.md, "Anomaly tell").

No restic, no server: the detector is pure (rm_core/anomaly.py) and judges each run against
the runs before it, exactly as the server does after each backup (the group's last
`history` successful runs, newest first). The histories are made up, so the model is stated:

normal groups (one profile each, drawn once)
  * files: 200 to 2,000,000 (log-uniform); a usual run changes 0.05 % to 5 % of them
    (log-uniform), times log-normal noise with sigma 0.3 to 0.8
  * one weekday runs twice the usual (a weekly job); 3 % of runs are a burst of 2-4x
    (updates, log rotation)
  * bytes added per changed file: 4 KiB to 2 MiB (log-uniform), times log-normal noise
    (sigma 0.5); 2 % of runs add 3-8x the bytes (a dump, a grown image)
  * the file count grows with new files; 2 % of runs delete 2-15 % of the files (clean-ups)
  * every run after the group's third is judged: short histories (3, 4, 5 runs) count too

attacks (each injected into one group, after at least 5 of its runs, judged against that
group's real history)
  * encrypt: 25-100 % of the files rewritten in place (incompressible: every byte new)
  * encrypt-new: the same share written as new encrypted files beside the originals
  * wipe: 40-95 % of the files deleted
  * runaway: a job writing 20-200x the group's usual bytes (at least 1-20 GiB) into the
    backed-up tree

    .venv/bin/python bench/anomaly.py                   # 1,000 normal runs, 20 attacks, seed 1
    .venv/bin/python bench/anomaly.py --seeds 10        # the same on ten seeds (spread of the figures)
    .venv/bin/python bench/anomaly.py --sweep           # false positives and detection by sensitivity
    .venv/bin/python bench/anomaly.py --curve           # detection by the share of files encrypted
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import write_results  # noqa: E402
from rm_core.anomaly import AnomalyPolicy, Run, judge  # noqa: E402

NORMAL_RUNS = 1000
ATTACKS = 20
JUDGED_PER_GROUP = 20  # judged runs per normal group (after its first 3)
KINDS = ("encrypt", "encrypt-new", "wipe", "runaway")
SHARE_LOW = 0.25  # an encrypting attack rewrites at least a quarter of the files in one run


def loguniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


@dataclass
class Group:
    """One source group's habits, and a generator of its normal runs."""

    rng: random.Random
    files: float = field(init=False)
    rate: float = field(init=False)
    sigma: float = field(init=False)
    bytes_per_file: float = field(init=False)
    weekly_day: int = field(init=False)
    day: int = 0

    def __post_init__(self) -> None:
        r = self.rng
        self.files = loguniform(r, 200, 2_000_000)
        self.rate = loguniform(r, 0.0005, 0.05)
        self.sigma = r.uniform(0.3, 0.8)
        self.bytes_per_file = loguniform(r, 4 << 10, 2 << 20)
        self.weekly_day = r.randrange(7)

    def usual_changed(self) -> float:
        return self.files * self.rate

    def normal(self) -> Run:
        r = self.rng
        self.day += 1
        changed = self.usual_changed() * math.exp(r.gauss(0, self.sigma))
        if self.day % 7 == self.weekly_day:
            changed *= 2
        if r.random() < 0.03:
            changed *= r.uniform(2, 4)
        changed = max(0, round(changed))
        added = changed * self.bytes_per_file * math.exp(r.gauss(0, 0.5))
        if r.random() < 0.02:
            added *= r.uniform(3, 8)
        new_files = changed * r.uniform(0.05, 0.3)
        self.files += new_files
        if r.random() < 0.02:
            self.files *= 1 - r.uniform(0.02, 0.15)
        return Run(changed, round(added), round(self.files))

    def attack(self, kind: str) -> tuple[Run, float]:
        """One attacked run; its size (share of files, or times the usual bytes)."""
        r = self.rng
        self.day += 1
        files = round(self.files)
        if kind in ("encrypt", "encrypt-new"):
            share = r.uniform(SHARE_LOW, 1.0)
            hit = round(files * share)
            # every encrypted byte is new to the repository; encrypt-new writes encrypted
            # copies beside the originals (deleted on a later run): the file count grows
            total = files if kind == "encrypt" else files + hit
            return Run(hit, round(hit * self.bytes_per_file * r.uniform(0.8, 1.2)), total), share
        if kind == "wipe":
            share = r.uniform(0.4, 0.95)
            return Run(round(self.usual_changed()), round(self.usual_changed() * self.bytes_per_file),
                       round(files * (1 - share))), share
        # 20-200x the usual bytes, and at least 1-20 GiB: a runaway writes gigabytes
        usual = self.usual_changed() * self.bytes_per_file
        added = max(usual * r.uniform(20, 200), r.uniform(1, 20) * (1 << 30))
        return Run(round(self.usual_changed() * r.uniform(1, 2)), round(added), files), added / max(usual, 1)


def run_bench(seed: int, policy: AnomalyPolicy, normal_runs: int = NORMAL_RUNS, attacks: int = ATTACKS) -> dict[str, Any]:
    rng = random.Random(seed)
    false_positives: list[dict[str, Any]] = []
    judged = 0
    groups = 0
    while judged < normal_runs:
        g = Group(random.Random(rng.random()))
        groups += 1
        history: list[Run] = [g.normal() for _ in range(3)]
        for _ in range(min(JUDGED_PER_GROUP, normal_runs - judged)):
            run = g.normal()
            verdict = judge(run, list(reversed(history)), policy)
            judged += 1
            if verdict is not None:
                false_positives.append({"group": groups, "history": len(history), "reason": verdict.reason})
            history.append(run)
    detected: list[dict[str, Any]] = []
    for i in range(attacks):
        g = Group(random.Random(rng.random()))
        history = [g.normal() for _ in range(rng.randint(5, 30))]
        kind = KINDS[i % len(KINDS)]
        run, magnitude = g.attack(kind)
        verdict = judge(run, list(reversed(history)), policy)
        detected.append({"kind": kind, "magnitude": round(magnitude, 3), "history": len(history),
                         "detected": verdict is not None, "reason": verdict.reason if verdict else None})
    found = sum(d["detected"] for d in detected)
    return {"seed": seed, "normal_runs": judged, "normal_groups": groups, "false_positives": len(false_positives),
            "false_positive_rate": len(false_positives) / judged, "attacks": attacks, "detected": found,
            "false_positive_examples": false_positives[:10], "attack_results": detected}


def table(results: list[dict[str, Any]], policy: AnomalyPolicy) -> str:
    lines = [f"anomaly tell: sensitivity {policy.sensitivity}, history {policy.history}, min_files "
             f"{policy.min_files}, min_bytes {policy.min_bytes >> 20} MiB, removed_share {policy.removed_share}",
             f"{'seed':>6} {'normal runs':>12} {'false pos.':>11} {'FP rate':>8} {'attacks':>8} {'detected':>9}"]
    for r in results:
        lines.append(f"{r['seed']:>6} {r['normal_runs']:>12} {r['false_positives']:>11} "
                     f"{r['false_positive_rate']:>8.2%} {r['attacks']:>8} {r['detected']:>9}")
    if len(results) > 1:
        fp = sum(r["false_positives"] for r in results)
        n = sum(r["normal_runs"] for r in results)
        det = sum(r["detected"] for r in results)
        att = sum(r["attacks"] for r in results)
        lines.append(f"{'all':>6} {n:>12} {fp:>11} {fp / n:>8.2%} {att:>8} {det:>9}")
    first = results[0]
    lines.append("")
    lines.append(f"seed {first['seed']}: attacks")
    for a in first["attack_results"]:
        lines.append(f"  {a['kind']:<12} size {a['magnitude']:>7} history {a['history']:>3}  "
                     f"{'DETECTED' if a['detected'] else 'missed  '}  {a['reason'] or ''}")
    if first["false_positive_examples"]:
        lines.append(f"seed {first['seed']}: false positives")
        for fp in first["false_positive_examples"]:
            lines.append(f"  group {fp['group']:>3} history {fp['history']:>3}  {fp['reason']}")
    return "\n".join(lines)


def sweep(seeds: int) -> tuple[list[dict[str, Any]], str]:
    rows = []
    out = [f"{'sensitivity':>11} {'FP rate':>8} {'detected':>10}   ({seeds} seeds x 1,000 normal runs, x 20 attacks)"]
    for k in (3, 4, 5, 6, 8, 10, 12, 16, 20):
        policy = AnomalyPolicy(sensitivity=k)
        res = [run_bench(s, policy) for s in range(1, seeds + 1)]
        fp = sum(r["false_positives"] for r in res) / sum(r["normal_runs"] for r in res)
        det = sum(r["detected"] for r in res)
        rows.append({"sensitivity": k, "false_positive_rate": fp, "detected": det, "attacks": 20 * seeds})
        out.append(f"{k:>11} {fp:>8.2%} {det:>5}/{20 * seeds:<4}")
    return rows, "\n".join(out)


def curve(attacks: int = 200) -> tuple[list[dict[str, Any]], str]:
    """How detection falls as an encrypting attack touches fewer files (the default policy)."""
    rows = []
    out = [f"{'share encrypted':>15} {'detected':>10}   ({attacks} groups each, seed 1)"]
    policy = AnomalyPolicy()
    for share in (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0):
        rng = random.Random(1)
        found = 0
        for _ in range(attacks):
            g = Group(random.Random(rng.random()))
            history = [g.normal() for _ in range(rng.randint(5, 30))]
            files = round(g.files)
            hit = round(files * share)
            run = Run(hit, round(hit * g.bytes_per_file), files)
            found += judge(run, list(reversed(history)), policy) is not None
        rows.append({"share": share, "detected": found, "attacks": attacks})
        out.append(f"{share:>15.0%} {found:>5}/{attacks:<4}")
    return rows, "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=1, help="run on seeds 1..N (default 1)")
    ap.add_argument("--sensitivity", type=float, default=None, help="the policy's sensitivity (default: the default)")
    ap.add_argument("--sweep", action="store_true", help="false positives and detection by sensitivity")
    ap.add_argument("--curve", action="store_true", help="detection by the share of files an attack encrypts")
    args = ap.parse_args()
    if args.curve:
        rows, text = curve()
        write_results("anomaly_curve", {"rows": rows}, table=text)
        return
    if args.sweep:
        rows, text = sweep(args.seeds)
        write_results("anomaly_sweep", {"rows": rows}, table=text)
        return
    policy = AnomalyPolicy() if args.sensitivity is None else AnomalyPolicy(sensitivity=args.sensitivity)
    results = [run_bench(s, policy) for s in range(1, args.seeds + 1)]
    write_results("anomaly", {"policy": policy.model_dump(), "runs": results}, table=table(results, policy))


if __name__ == "__main__":
    main()
