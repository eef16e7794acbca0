"""The anomaly tell (DESIGN.md §12): a backup whose restic summary lies far outside its own
group's recent history — ransomware rewriting every file, a runaway job adding gigabytes, a
mass deletion — marks the job `warning` with a reason a person reads.

Pure: plain numbers in, a verdict out; the server feeds it a group's last successful runs,
bench/anomaly.py measures it on synthetic histories (docs/benchmarks.md).

Robust statistics, so one odd run in the history moves nothing: per measure the median and
the MAD (median absolute deviation, scaled by 1.4826 to read as a standard deviation). A run
is past the line when it exceeds

    max(median + sensitivity x w x spread, ratio x w x median, floor)

where spread is the scaled MAD, but never below `REL_SPREAD` of the median (a history of
identical runs has MAD 0: the next run one file over would be "infinitely" unusual), and
w = 1 + 1/n widens the line for a short history of n runs. `ratio` keeps the line well
above the usual even for calm groups (5x for files, 12x for bytes, the noisier measure);
`floor` (min_files, at most a fifth of the group's files; min_bytes) keeps small changes
from being news. Removal is judged as a share: the files a run saw against the usual total.
The constants are the bench's: docs/benchmarks.md has the figures and the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from pydantic import Field

from rm_core.humanize import count, size
from rm_core.model_base import Body

MIN_HISTORY = 3
DEFAULT_HISTORY = 20
DEFAULT_SENSITIVITY = 10.0
RATIO = 5.0  # files: a run is never unusual below five times the group's median …
RATIO_BYTES = 12.0  # … bytes, twelve times: dumps and grown images make bytes the noisier measure
REL_SPREAD = 0.25  # the spread is at least a quarter of the median
DEFAULT_MIN_FILES = 200
FLOOR_SHARE = 0.2  # … but a fifth of all its files changed is news in a group of a few hundred
DEFAULT_MIN_BYTES = 1 << 30
DEFAULT_REMOVED_SHARE = 0.3
MIN_FILES_REMOVED = 100  # and a removal is news only when at least this many files went

MEASURES = ("files_changed", "data_added", "files_removed")


class AnomalyPolicy(Body):
    """`anomaly` of a source group: how far from its history a backup may go before it is
    marked `warning` and raises `backup.anomaly`; `pause_forget` holds the group's retention
    until an operator acknowledges the anomaly (so forget never prunes away the last good
    snapshots during an attack)."""

    enabled: bool = True
    history: int = Field(default=DEFAULT_HISTORY, ge=MIN_HISTORY, le=200)
    sensitivity: float = Field(default=DEFAULT_SENSITIVITY, ge=1, le=1000)
    min_files: int = Field(default=DEFAULT_MIN_FILES, ge=0, le=10**12)
    min_bytes: int = Field(default=DEFAULT_MIN_BYTES, ge=0, le=10**18)
    removed_share: float = Field(default=DEFAULT_REMOVED_SHARE, gt=0, le=1)
    pause_forget: bool = False


@dataclass(frozen=True)
class Run:
    """What the detector reads of one backup's restic summary."""

    files_changed: int  # files new + files changed
    data_added: int  # bytes restic added to the repository
    total_files: int  # files the backup saw

    @classmethod
    def of(cls, summary: Optional[Dict[str, Any]]) -> Optional["Run"]:
        """The run a backup summary describes (None: not a backup summary)."""
        if not isinstance(summary, dict):
            return None
        try:
            new, changed = int(summary.get("files_new") or 0), int(summary.get("files_changed") or 0)
            added, total = int(summary.get("data_added") or 0), summary.get("total_files_processed")
        except (TypeError, ValueError):
            return None
        if total is None and not (new or changed or added):
            return None
        try:
            return cls(new + changed, added, int(total or 0))
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Line:
    """Where one measure becomes unusual, and the usual range shown beside it."""

    measure: str
    median: float
    threshold: float
    low: float  # the usual range: 10th to 90th percentile of the history
    high: float


@dataclass(frozen=True)
class Verdict:
    measure: str
    value: float
    line: Line
    reason: str

    def details(self) -> Dict[str, Any]:
        return {"measure": self.measure, "value": self.value, "threshold": round(self.line.threshold, 3),
                "median": self.line.median, "usual_low": self.line.low, "usual_high": self.line.high,
                "reason": self.reason}


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return float(s[mid]) if n % 2 else (s[mid - 1] + s[mid]) / 2.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    s = sorted(values)
    return float(s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))])


def _line(measure: str, values: Sequence[float], policy: AnomalyPolicy, floor: float, ratio: float) -> Line:
    med = median(values)
    spread = max(1.4826 * median([abs(v - med) for v in values]), REL_SPREAD * med)
    # a short history's median and spread are uncertain: the line stands wider (x1.33 at 3
    # runs, x1.05 at 20), which halved the false positives of 3-5 run histories in the bench
    wider = 1 + 1 / len(values)
    threshold = max(med + policy.sensitivity * wider * spread, ratio * wider * med, floor)
    return Line(measure, med, threshold, percentile(values, 0.1), percentile(values, 0.9))


def lines(history: Sequence[Run], policy: AnomalyPolicy) -> Dict[str, Line]:
    """The lines of every measure for a history (None of them below MIN_HISTORY runs).

    `files_removed` is a count of files too: the line is the usual total times
    (1 - removed_share), drawn as the number of files gone."""
    if len(history) < MIN_HISTORY:
        return {}
    totals = [r.total_files for r in history]
    usual_total = median(totals)
    gone = max(usual_total * policy.removed_share, float(MIN_FILES_REMOVED))
    files_floor = min(float(policy.min_files), FLOOR_SHARE * usual_total) if usual_total else float(policy.min_files)
    return {
        "files_changed": _line("files_changed", [r.files_changed for r in history], policy, files_floor, RATIO),
        "data_added": _line("data_added", [r.data_added for r in history], policy, policy.min_bytes, RATIO_BYTES),
        "files_removed": Line("files_removed", usual_total, gone, percentile(totals, 0.1), percentile(totals, 0.9)),
    }


def judge(run: Run, history: Sequence[Run], policy: AnomalyPolicy) -> Optional[Verdict]:
    """The most striking way `run` lies past its history's lines, or None (also while the
    history is shorter than MIN_HISTORY, or the policy is off). `history`: the group's
    latest successful runs before this one, newest first; only `policy.history` are read."""
    if not policy.enabled:
        return None
    recent = list(history)[: policy.history]
    drawn = lines(recent, policy)
    if not drawn:
        return None
    found: List[Verdict] = []
    changed = drawn["files_changed"]
    if run.files_changed > changed.threshold:
        found.append(Verdict("files_changed", run.files_changed, changed,
                             f"{count(run.files_changed)} files changed; usual {_range(changed, count)}"))
    added = drawn["data_added"]
    if run.data_added > added.threshold:
        found.append(Verdict("data_added", run.data_added, added,
                             f"{size(run.data_added)} added; usual {_range(added, size)}"))
    removed = drawn["files_removed"]
    gone = removed.median - run.total_files
    if gone > removed.threshold:
        share = gone / removed.median if removed.median else 1.0
        found.append(Verdict("files_removed", gone, removed,
                             f"{share:.0%} of files gone ({count(run.total_files)} seen; usual "
                             f"{_range(removed, count)})"))
    if not found:
        return None
    # the measure furthest past its line speaks first
    return max(found, key=lambda v: v.value / max(v.line.threshold, 1.0))


def _range(line: Line, fmt: Any) -> str:
    low, high = fmt(int(line.low)), fmt(int(line.high))
    return low if low == high else f"{low}–{high}"
