"""Numbers as a person reads them: sizes, counts, durations, rates, plurals, restic progress.

Pure and shared: the agent writes its live backup log with these, the console can show
`job.progress` and a finished job's summary with the same words.
"""

from __future__ import annotations

from typing import Any, Mapping

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
SEP = " · "


def size(n: float | None) -> str:
    """Bytes in binary units: 377507347 -> "360 MiB", 1288490188 -> "1.2 GiB", 512 -> "512 B"."""
    if n is None:
        return "?"
    value = float(n)
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value < 1024:
        return f"{sign}{int(value)} B"
    for unit in _UNITS[1:]:
        value /= 1024.0
        text = f"{value:.1f}" if value < 9.95 else f"{value:.0f}"
        if float(text) < 1024 or unit == _UNITS[-1]:
            return f"{sign}{text} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def rate(bytes_per_second: float | None) -> str:
    """A transfer rate: "45 MiB/s"."""
    return f"{size(bytes_per_second)}/s"


def count(n: int | None) -> str:
    """An integer with thousands separators: 12345 -> "12,345"."""
    return "?" if n is None else f"{int(n):,}"


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """ "1 host", "2 hosts", "20,000 hosts" (plural_form for irregular words)."""
    word = singular if n == 1 else (plural_form or singular + "s")
    return f"{count(n)} {word}"


def duration(seconds: float | None) -> str:
    """A duration, two units at most: 1.678 -> "1.7s", 190 -> "3m10s", 7500 -> "2h05m", 97200 -> "1d03h"."""
    if seconds is None:
        return "?"
    s = max(0.0, float(seconds))
    if s < 9.95 and s != int(s):  # restic's ETA is whole seconds: "2s", not "2.0s"
        return f"{s:.1f}s"
    total = int(round(s))
    if total < 60:
        return f"{total}s"
    minutes, sec = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def short_id(ident: str | None, length: int = 8) -> str:
    """The 8-character form restic and the console show (restic ≥ 0.15 reports 64)."""
    return (ident or "?")[:length]


def _done_of(done: float | None, total: float | None, fmt: Any, noun: str = "") -> str | None:
    if done is None and total is None:
        return None
    text = fmt(done or 0) if total is None else f"{fmt(done or 0)} / {fmt(total)}"
    return f"{text} {noun}".rstrip()


def backup_progress(
    percent: float | None = None,
    files_done: int | None = None,
    files_total: int | None = None,
    bytes_done: int | None = None,
    bytes_total: int | None = None,
    eta_seconds: float | None = None,
    elapsed_seconds: float | None = None,
) -> str:
    """A backup's progress in one line (the fields of rm_core.restic.Progress, each optional):

    "43% · 8,444 / 20,000 files · 55 KiB / 125 KiB · 55 KiB/s · ETA 2s"."""
    parts = []
    if percent is not None:
        parts.append(f"{int(percent)}%")
    for part in (_done_of(files_done, files_total, count, "files"), _done_of(bytes_done, bytes_total, size)):
        if part:
            parts.append(part)
    if bytes_done is not None and elapsed_seconds:
        parts.append(rate(bytes_done / elapsed_seconds))
    if eta_seconds is not None and (percent is None or percent < 100):
        parts.append(f"ETA {duration(eta_seconds)}")
    return SEP.join(parts) if parts else "backup running"


def backup_summary(summary: Mapping[str, Any]) -> str:
    """restic's backup summary as a sentence with human units, e.g.

    "snapshot fcfb0a12 saved · 20,000 files: 20,000 new, 0 changed, 0 unmodified ·
    125 KiB processed in 2.6s · 6.6 MiB added to the repository"."""
    sid = summary.get("snapshot_id")
    parts = [f"snapshot {short_id(sid)} saved" if sid else "backup finished"]
    kinds = [(k, summary.get(f"files_{k}")) for k in ("new", "changed", "unmodified")]
    if any(v is not None for _, v in kinds):
        total = summary.get("total_files_processed")
        if total is None:
            total = sum(v or 0 for _, v in kinds)
        parts.append(f"{plural(total, 'file')}: " + ", ".join(f"{count(v or 0)} {k}" for k, v in kinds))
    processed = summary.get("total_bytes_processed")
    took = summary.get("total_duration")
    if processed is not None:
        parts.append(f"{size(processed)} processed" + (f" in {duration(took)}" if took is not None else ""))
    elif took is not None:
        parts.append(f"took {duration(took)}")
    if summary.get("data_added") is not None:
        parts.append(f"{size(summary['data_added'])} added to the repository")
    return SEP.join(parts)
