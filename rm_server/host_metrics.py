"""/metrics' per-host series (Prometheus naming: seconds, bytes, `_total`), built from one
query and kept for a few seconds.

Every series carries only `host_id`; `rm_host_info` carries the hostname and what the agent
reports about itself, to join where a name is wanted (`* on(host_id) group_left(hostname)
rm_host_info`): a hostname on every series would double the text of a 19k-host scrape and
start new series at each rename."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime

from rm_core.enums import JobKind
from rm_server.packed_text import PackedText
from rm_server.store.db import Row

log = logging.getLogger("rm_server.metrics")

# Last outcome per kind for these kinds; 1 succeeded (or warning), 0 failed (or lost).
_BACKUP, _CHECK, _DRILL = JobKind.backup.value, JobKind.check.value, JobKind.drill.value
_OK = {"succeeded": 1, "warning": 1, "failed": 0, "lost": 0}
# A whole JSON number only (what an agent sent is not trusted: "1e+" would break the scrape).
_NUMBER = {"data_added": re.compile(r'"data_added":\s*(\d{1,20})(?=[\s,}])'),
           "total_duration": re.compile(r'"total_duration":\s*(\d{1,15}(?:\.\d{1,9})?(?:[eE][+-]?\d{1,3})?)(?=[\s,}])'),
           "total_size": re.compile(r'"total_size":\s*(\d{1,20})(?=[\s,}])')}

FAMILIES = (
    ("rm_host_info", "gauge", "A host: its name and id (1 for every host); join on host_id for the name."),
    ("rm_host_online", "gauge", "1 while the host's agent is connected."),
    ("rm_host_stale", "gauge", "1 while a scheduled source group's last successful backup is overdue."),
    ("rm_host_created_timestamp_seconds", "gauge", "When the host enrolled (Unix time)."),
    ("rm_host_last_backup_success_timestamp_seconds", "gauge",
     "When the host's last successful backup ended (Unix time; absent before the first)."),
    ("rm_host_last_backup_duration_seconds", "gauge", "How long the host's last backup ran."),
    ("rm_host_last_backup_added_bytes", "gauge", "Bytes the host's last backup added to its repository."),
    ("rm_host_repository_size_bytes", "gauge", "Size of the host's repository, as restic stats last reported it."),
    ("rm_host_last_job_success", "gauge",
     "Outcome of the host's last finished job of a kind: 1 succeeded or warning, 0 failed or lost."),
    ("rm_host_drill_overdue", "gauge", "1 while a source group's last good restore drill is older than allowed."),
)


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _seconds(text: str | None) -> str | None:
    """An ISO time column as whole Unix seconds (the text Prometheus reads)."""
    return None if not text else str(int(datetime.fromisoformat(text).timestamp()))


def _number(raw: str | None, key: str) -> str | None:
    """One number out of a JSON document, as the document wrote it (already a valid sample
    value). A search, not json.loads: at 19k hosts decoding every summary and stats
    document was most of a rebuild's cost, and one number of each is wanted."""
    if not raw:
        return None
    m = _NUMBER[key].search(raw)
    return None if m is None else m.group(1)


# Column positions in a row of store.host_metrics (rows stay tuples: no per-row dict).
(_HOST, _NAME, _STATUS, _STALE, _CREATED, _SUCCESS, _BACKUP_STATE, _STARTED, _FINISHED, _SUMMARY, _STATS,
 _CHECK_STATE, _DRILL_STATE, _OVERDUE) = range(14)
_OUTCOMES = ((_BACKUP, _BACKUP_STATE), (_CHECK, _CHECK_STATE), (_DRILL, _DRILL_STATE))


def _duration(row: Row) -> str | None:
    took = _number(row[_SUMMARY], "total_duration")
    if took is None and row[_STARTED] and row[_FINISHED]:
        took = f"{(datetime.fromisoformat(row[_FINISHED]) - datetime.fromisoformat(row[_STARTED])).total_seconds():.3f}"
    return took


# A family labelled by host_id alone -> its value for a row (None: no sample for that host).
_VALUE: dict[str, Callable[[Row], str | None]] = {
    "rm_host_online": lambda r: "1" if r[_STATUS] == "online" else "0",
    "rm_host_stale": lambda r: "1" if r[_STALE] else "0",
    "rm_host_created_timestamp_seconds": lambda r: _seconds(r[_CREATED]) or "0",
    "rm_host_last_backup_success_timestamp_seconds": lambda r: _seconds(r[_SUCCESS]),
    "rm_host_last_backup_duration_seconds": _duration,
    "rm_host_last_backup_added_bytes": lambda r: _number(r[_SUMMARY], "data_added"),
    "rm_host_repository_size_bytes": lambda r: _number(r[_STATS], "total_size"),
    "rm_host_drill_overdue": lambda r: "1" if r[_OVERDUE] else "0",
}


def _samples(name: str, rows: list[Row]) -> list[str]:
    if name == "rm_host_info":
        return [f'rm_host_info{{host_id="{_escape(r[_HOST])}",hostname="{_escape(r[_NAME])}"}} 1' for r in rows]
    if name == "rm_host_last_job_success":
        return [f'{name}{{host_id="{_escape(r[_HOST])}",kind="{kind}"}} {_OK[r[at]]}'
                for r in rows for kind, at in _OUTCOMES if r[at] in _OK]
    value = _VALUE[name]
    return [f'{name}{{host_id="{_escape(r[_HOST])}"}} {v}' for r in rows if (v := value(r)) is not None]


def render(rows: list[Row]) -> PackedText:
    """The per-host families for rows of store.host_metrics, deflated.

    Built and compressed one family at a time: at 19k hosts the whole text is 17 MB, and
    holding every family's 228k lines, then their join, then its encoding at once took 45 MB
    of Python's memory for a 21k-host build (11 MB this way). Only the compressed 3 MB is
    kept (packed_text.py); a plain-text scrape unpacks it."""
    def families() -> Iterator[bytes]:
        for name, kind, help_text in FAMILIES:
            lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *_samples(name, rows)]
            yield ("\n".join(lines) + "\n").encode()

    return PackedText.pack(families())


class HostMetricsCache:
    """The rendered per-host text (deflated), served at once and rebuilt in the
    background once older than `ttl` seconds (stale-while-revalidate): a scrape never waits
    for a rebuild, except the very first one. At 19k hosts a rebuild takes a few hundred ms
    of a reader thread; a scrape served from here takes a few ms."""

    def __init__(self, build: Callable[[], Awaitable[PackedText]], ttl: float = 10.0) -> None:
        self.build = build
        self.ttl = ttl
        self._made_at = float("-inf")
        self._value: PackedText | None = None
        self._building: asyncio.Future[PackedText] | None = None

    async def get(self) -> PackedText:
        loop = asyncio.get_running_loop()
        if self._value is not None and loop.time() - self._made_at < self.ttl:
            return self._value
        if self._building is None or self._building.done():
            self._building = asyncio.ensure_future(self._build())
            self._building.add_done_callback(_log_failure)
        if self._value is not None and self.ttl > 0:
            return self._value  # the rebuild's result serves the next scrape
        return await asyncio.shield(self._building)

    async def _build(self) -> PackedText:
        value = self._value = await self.build()
        self._made_at = asyncio.get_running_loop().time()
        return value


def _log_failure(future: asyncio.Future[PackedText]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("rebuilding the per-host metrics failed; the last ones are served: %s", future.exception())

