"""The fleet as the console holds it: hosts by id, sorted and filtered in memory.

Pure Python (no widgets) so that 20,000 hosts can be sorted, filtered and counted in tens
of milliseconds and unit tested without a terminal. The screen applies every event here at
once and asks for `visible()` at most a few times a second."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from rm_core.api import Host, LastBackup, LastVerified
from rm_core.enums import HostStatus, JobKind, JobState
from rm_core.jobs import Job
from rm_tui.next_runs import NextRuns

FAILED = (JobState.failed, JobState.lost)
# the drill states the server reports as a host's last_verified (a cancelled drill verified nothing)
VERIFIED_STATES = (JobState.succeeded, JobState.warning, JobState.failed)
# Most urgent first: a stale host has missed backups, a failed one broke, a failed restore drill
# means its backups may not come back, offline ones may come back themselves.
# A backup far outside its history (an open anomaly) may be an attack in progress: first of all.
# A copy past its group's max lag leaves one copy of the data.
PROBLEMS = ("anomaly", "stale", "failed", "drill", "copy", "offline", "drift")
KEYWORDS = frozenset({*PROBLEMS, "problems", "online", "pending"})


def drift(h: Host) -> bool:
    return h.schedule_version != h.applied_schedule_version


def drill_failed(h: Host) -> bool:
    """The host's newest finished restore drill failed, or a source group of it has had no good
    drill for longer than its policy allows (the server's drill_overdue)."""
    return h.drill_overdue or (h.last_verified is not None and h.last_verified.state in FAILED)


def copy_late(h: Host, now: datetime | None = None) -> bool:
    """The copy has missed a snapshot for longer than its group allows (copy_overdue_at passed)."""
    due = h.copy_overdue_at
    return h.copy_enabled and due is not None and (now or datetime.now(timezone.utc)) >= due


def problem(h: Host) -> str | None:
    """The most urgent thing wrong with a host, or None."""
    if h.open_anomalies:
        return "anomaly"
    if h.stale:
        return "stale"
    if h.last_backup is not None and h.last_backup.state in FAILED:
        return "failed"
    if drill_failed(h):
        return "drill"
    if copy_late(h):
        return "copy"
    if h.status == HostStatus.offline:
        return "offline"
    if drift(h):
        return "drift"
    return None


def _backup_ts(h: Host) -> float:
    done = h.last_backup.finished_at if h.last_backup else None
    return done.timestamp() if done else float("-inf")


def _verified_key(h: Host) -> tuple[int, float]:
    """Failed or overdue drills first, then the oldest verification; hosts without drills last."""
    lv = h.last_verified
    if lv is None:
        return (0 if h.drill_overdue else 2, float("-inf"))
    return (0 if drill_failed(h) else 1, lv.finished_at.timestamp() if lv.finished_at else float("-inf"))


# column key -> (name shown, sort key of a host); ties always break by hostname
SORTS: dict[str, tuple[str, Callable[[Host, int], Any]]] = {
    "host": ("host", lambda h, a: 0),
    "status": ("status", lambda h, a: h.status.value),
    "backup": ("last backup", lambda h, a: _backup_ts(h)),
    "result": ("result", lambda h, a: h.last_backup.state.value if h.last_backup else ""),
    "drift": ("schedule", lambda h, a: (not drift(h), h.schedule_version)),
    "repo": ("repo size", lambda h, a: h.repo_size if h.repo_size is not None else -1),
    "activity": ("activity", lambda h, a: -a),
    "next": ("next run", lambda h, a: 0),  # FleetModel._key asks next_runs: a host alone has no crons
    "verified": ("last verified", lambda h, a: _verified_key(h)),
    # the copy furthest behind first, then copies up to date, then hosts without a copy
    "copy": ("copy lag", lambda h, a: (not h.copy_enabled, h.copy_behind_since is None,
                                       h.copy_behind_since.timestamp() if h.copy_behind_since else 0.0)),
}


class FleetModel:
    def __init__(self) -> None:
        self.hosts: dict[str, Host] = {}
        self.activity: dict[str, dict[str, str]] = {}  # host_id -> job_id -> "backup 42%"
        self.next_runs = NextRuns()  # host_id -> its crons, and their next fires by the clock
        self.sort = "host"
        self.reverse = False
        self.problems_first = False
        self.filter_text = ""
        self._names: dict[str, str] = {}
        self._keys: dict[str, tuple[Any, ...]] = {}  # host_id -> its sort key as last used
        self._sorted: list[str] | None = None
        self._visible: list[str] | None = None
        self._counts: Counter[str] = Counter()
        self._tallies: dict[str, tuple[str, ...]] = {}  # host_id -> what it adds to _counts
        self._narrow_from: list[str] | None = None  # the last hostname filter's result…
        self._narrowed = ""  # …and its text

    # ------------------------------------------------------------ changes

    def load(self, hosts: list[Host]) -> None:
        self.hosts = {h.id: h for h in hosts}
        self.activity = {k: v for k, v in self.activity.items() if k in self.hosts}
        self._names = {h.id: h.hostname.lower() for h in hosts}
        self._tallies = {h.id: tuple(_tally(h)) for h in hosts}
        self._counts = Counter(key for keys in self._tallies.values() for key in keys)  # one C loop
        self.reorder()

    def put(self, host: Host) -> None:
        """A host.updated: the new host replaces the old; order is fixed lazily if it moved."""
        self._recount(host)
        self.hosts[host.id] = host
        self._names[host.id] = host.hostname.lower()
        self._check(host.id)

    def remove(self, host_id: str) -> None:
        old = self.hosts.pop(host_id, None)
        if old is not None:
            for key in self._tallies.pop(host_id, ()):
                self._counts[key] -= 1
            self.activity.pop(host_id, None)
            self._names.pop(host_id, None)
            self._keys.pop(host_id, None)
            self._sorted = None
            self._visible = None
            self._narrow_from = None

    def job(self, job: Job) -> bool:
        """A job.updated: running jobs in the activity column, finished backups as the last backup,
        finished drills as the last verification (the server sends no host.updated for those)."""
        host = self.hosts.get(job.host_id)
        if host is None:
            return False
        jobs = self.activity.setdefault(job.host_id, {})
        if job.state.terminal:
            jobs.pop(job.id, None)
            if job.kind == JobKind.backup and _newer(job, host.last_backup):
                host.last_backup = LastBackup(job_id=job.id, state=job.state, finished_at=job.finished_at)
                self._recount(host)
            elif job.kind == JobKind.drill and job.state in VERIFIED_STATES and _newer(job, host.last_verified):
                s = job.summary or {}
                host.last_verified = LastVerified(
                    job_id=job.id, state=job.state, finished_at=job.finished_at, source_group_id=job.source_group_id,
                    **{k: s[k] for k in ("files", "bytes", "mismatches") if isinstance(s.get(k), int)})
                self._recount(host)
        else:
            jobs[job.id] = f"{job.kind.value} {job.state.value}"
        self._check(job.host_id)
        return True

    def progress(self, host_id: str | None, job_id: str, progress: dict[str, Any]) -> bool:
        host = self.hosts.get(host_id or "")
        if host is None:
            return False
        jobs = self.activity.setdefault(host.id, {})
        kind = jobs.get(job_id, "job").split(" ")[0]
        pct = progress.get("percent")
        jobs[job_id] = f"{kind} {pct:.0f}%" if isinstance(pct, (int, float)) else f"{kind} running"
        return True  # the number of running jobs (the activity sort) did not change

    def _recount(self, host: Host) -> None:
        """The counts follow a changed host (thousands a second in a reconnect storm: most change nothing)."""
        new = tuple(_tally(host))
        old = self._tallies.get(host.id, ())
        if new != old:
            for key in old:
                self._counts[key] -= 1
            for key in new:
                self._counts[key] += 1
            self._tallies[host.id] = new

    def _key(self, host_id: str) -> tuple[Any, ...]:
        h = self.hosts[host_id]
        value = (self.next_runs.sort_key(host_id) if self.sort == "next"
                 else SORTS[self.sort][1](h, len(self.activity.get(host_id) or ())))
        key: tuple[Any, ...] = (value, self._names[host_id])
        if self.problems_first:
            p = problem(h)
            key = (PROBLEMS.index(p) if p else len(PROBLEMS),) + key
        return key

    def _check(self, host_id: str) -> None:
        if self._sorted is None:
            return
        if host_id not in self._keys or self._keys[host_id] != self._key(host_id):
            self._sorted = None
            self._visible = None
            self._narrow_from = None
        elif self.filter_text in KEYWORDS:
            self._visible = None  # status or problems may have changed: one pass over the sorted ids
        # a hostname filter: membership changes only with the name, which is in the sort key

    # ------------------------------------------------------------ views

    @property
    def order_changed(self) -> bool:
        """True when the next visible() differs in order or membership from the last one."""
        return self._visible is None

    def reorder(self) -> None:
        self._sorted = None
        self._visible = None
        self._narrow_from = None

    def set_sort(self, column: str) -> None:
        """Sort by `column`; the same column again reverses the order (k9s does the same)."""
        self.reverse = not self.reverse if column == self.sort else False
        self.sort = column
        self.reorder()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip().lower()
        self._visible = None
        if not self.filter_text.startswith(self._narrowed):
            self._narrow_from = None

    def toggle_problems(self) -> None:
        self.problems_first = not self.problems_first
        self.reorder()

    def sorted_ids(self) -> list[str]:
        if self._sorted is None:
            self._keys = {hid: self._key(hid) for hid in self.hosts}
            ids = sorted(self._keys, key=self._keys.__getitem__)
            if self.reverse:
                # reverse the column, not the problems grouping
                if self.problems_first:
                    groups: dict[int, list[str]] = {}
                    for hid in ids:
                        groups.setdefault(self._keys[hid][0], []).append(hid)
                    ids = [hid for g in sorted(groups) for hid in reversed(groups[g])]
                else:
                    ids.reverse()
            self._sorted = ids
            self._visible = None
            self._narrow_from = None
        return self._sorted

    def visible(self) -> list[str]:
        ids = self.sorted_ids()
        if self._visible is None:
            f = self.filter_text
            if not f:
                self._visible = ids
            elif f in KEYWORDS:
                self._visible = [hid for hid in ids if self.matches(hid, f)]
            else:
                # the common case, a part of a hostname: one substring test per host, and a
                # longer filter only narrows what the shorter one already kept
                base = self._narrow_from if self._narrow_from is not None and f.startswith(self._narrowed) else ids
                names = self._names
                self._visible = [hid for hid in base if f in names[hid]]
                self._narrow_from, self._narrowed = self._visible, f
        return self._visible

    def matches(self, host_id: str, f: str) -> bool:
        h = self.hosts[host_id]
        if f in self._names[host_id] or f == h.status.value:
            return True
        return (f == "problems" and problem(h) is not None) or (f in PROBLEMS and _has(h, f))

    def counts(self) -> dict[str, int]:
        """Hosts per status and per problem, kept up to date by every change (no pass over 20,000)."""
        return {**{k: v for k, v in self._counts.items() if v}, "hosts": len(self.hosts)}

    def sort_label(self) -> str:
        label = SORTS[self.sort][0] + (" ↓" if self.reverse else "")
        return f"problems first, then {label}" if self.problems_first else label


def _tally(h: Host) -> list[str]:
    """What a host adds to the counts in the status line."""
    keys = [h.status.value] + [p for p in ("anomaly", "stale", "failed", "drill", "copy", "drift") if _has(h, p)]
    if problem(h):
        keys.append("problems")
    return keys


def _has(h: Host, what: str) -> bool:
    if what == "stale":
        return h.stale
    if what == "failed":
        return h.last_backup is not None and h.last_backup.state in FAILED
    if what == "offline":
        return h.status == HostStatus.offline
    if what == "drill":
        return drill_failed(h)
    if what == "anomaly":
        return h.open_anomalies > 0
    if what == "copy":
        return copy_late(h)
    return drift(h)


def _newer(job: Job, last: LastBackup | LastVerified | None) -> bool:
    if last is None or last.finished_at is None:
        return True
    return (job.finished_at or datetime.now(timezone.utc)) >= last.finished_at
