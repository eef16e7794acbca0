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
import zlib
from collections.abc import Awaitable, Callable
from datetime import datetime

from rm_core.enums import JobKind
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


def render(rows: list[Row]) -> str:
    """The per-host families for rows of store.host_metrics (in its column order)."""
    series: dict[str, list[str]] = {name: [] for name, _, _ in FAMILIES}
    info, online, stale, created = (series["rm_host_info"], series["rm_host_online"], series["rm_host_stale"],
                                    series["rm_host_created_timestamp_seconds"])
    success = series["rm_host_last_backup_success_timestamp_seconds"]
    duration = series["rm_host_last_backup_duration_seconds"]
    added, size = series["rm_host_last_backup_added_bytes"], series["rm_host_repository_size_bytes"]
    outcome, overdue = series["rm_host_last_job_success"], series["rm_host_drill_overdue"]
    for (host_id, hostname, status, is_stale, created_at, last_success, backup_state, started, finished, summary,
         stats, check_state, drill_state, is_overdue) in rows:
        host = _escape(host_id)
        label = f'{{host_id="{host}"}}'
        info.append(f'rm_host_info{{host_id="{host}",hostname="{_escape(hostname)}"}} 1')
        online.append(f"rm_host_online{label} {1 if status == 'online' else 0}")
        stale.append(f"rm_host_stale{label} {1 if is_stale else 0}")
        overdue.append(f"rm_host_drill_overdue{label} {1 if is_overdue else 0}")
        created.append(f"rm_host_created_timestamp_seconds{label} {_seconds(created_at) or 0}")
        if last_success:
            success.append(f"rm_host_last_backup_success_timestamp_seconds{label} {_seconds(last_success)}")
        took = _number(summary, "total_duration")
        if took is None and started and finished:
            took = f"{(datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds():.3f}"
        if took is not None:
            duration.append(f"rm_host_last_backup_duration_seconds{label} {took}")
        bytes_added = _number(summary, "data_added")
        if bytes_added is not None:
            added.append(f"rm_host_last_backup_added_bytes{label} {bytes_added}")
        total = _number(stats, "total_size")
        if total is not None:
            size.append(f"rm_host_repository_size_bytes{label} {total}")
        for kind, state in ((_BACKUP, backup_state), (_CHECK, check_state), (_DRILL, drill_state)):
            if state in _OK:
                outcome.append(f'rm_host_last_job_success{{host_id="{host}",kind="{kind}"}} {_OK[state]}')
    out = []
    for name, kind, help_text in FAMILIES:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *series[name]]
    return "\n".join(out) + "\n"


class HostMetricsCache:
    """The rendered per-host text (and its gzip), served at once and rebuilt in the
    background once older than `ttl` seconds (stale-while-revalidate): a scrape never waits
    for a rebuild, except the very first one. At 19k hosts a rebuild takes a few hundred ms
    of a reader thread; a scrape served from here takes a few ms."""

    def __init__(self, build: Callable[[], Awaitable[str]], ttl: float = 10.0) -> None:
        self.build = build
        self.ttl = ttl
        self._made_at = float("-inf")
        self._value: tuple[bytes, bytes] | None = None
        self._building: asyncio.Future[tuple[bytes, bytes]] | None = None

    async def get(self) -> tuple[bytes, bytes]:
        """(text, the same text as one gzip member)."""
        loop = asyncio.get_running_loop()
        if self._value is not None and loop.time() - self._made_at < self.ttl:
            return self._value
        if self._building is None or self._building.done():
            self._building = asyncio.ensure_future(self._build())
            self._building.add_done_callback(_log_failure)
        if self._value is not None and self.ttl > 0:
            return self._value  # the rebuild's result serves the next scrape
        return await asyncio.shield(self._building)

    async def _build(self) -> tuple[bytes, bytes]:
        text = (await self.build()).encode()
        packed = await asyncio.to_thread(gzip_member, text)
        self._value = (text, packed)
        self._made_at = asyncio.get_running_loop().time()
        return self._value


def _log_failure(future: asyncio.Future[tuple[bytes, bytes]]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("rebuilding the per-host metrics failed; the last ones are served: %s", future.exception())


def gzip_member(data: bytes) -> bytes:
    """One gzip member; members written one after another are one valid gzip stream (RFC 1952
    §2.2), so a scrape sends the fleet part's member followed by this cached one."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()
