"""bench/tui_scale.py's targets (issue 9) and the table it prints."""

from __future__ import annotations

TARGETS = {"signin_5k_s": 0.5, "signin_20k_s": 1.0, "key_p95_ms": 30, "burst_key_p95_ms": 100,
           "burst_drain_s": 2.0, "filter_20k_ms": 50, "rss_20k_mb": 150}


def table(results: list[dict]) -> str:
    def g(r, *path):
        for k in path:
            r = r.get(k) if isinstance(r, dict) else None
        return "–" if r is None else r

    rows = [
        ("sign-in → full fleet frame (s)", lambda r: g(r, "signin_s")),
        ("key → repaint idle p50 / p95 (ms)", lambda r: f"{g(r, 'idle_keys', 'p50_ms')} / {g(r, 'idle_keys', 'p95_ms')}"),
        ("key → repaint, 100 updates/s p50 / p95 (ms)",
         lambda r: f"{g(r, 'load_keys', 'p50_ms')} / {g(r, 'load_keys', 'p95_ms')} ({g(r, 'load_keys', 'timeouts')} timeouts)"),
        ("progress events applied /s", lambda r: g(r, "load_keys", "progress_applied_per_s")),
        ("key → repaint, reconnect burst p50 / p95 (ms)",
         lambda r: f"{g(r, 'burst', 'p50_ms')} / {g(r, 'burst', 'p95_ms')} ({g(r, 'burst', 'timeouts')} timeouts)"),
        ("burst: agents back (s) / all online in the console after (s)",
         lambda r: f"{g(r, 'burst', 'agents_back_s')} / {g(r, 'burst', 'drained_after_back_s')}"),
        ("burst: event published → applied p50 / max (s), stream reconnects",
         lambda r: f"{g(r, 'burst', 'event_lag_p50_s')} / {g(r, 'burst', 'event_lag_max_s')}, "
                   f"{g(r, 'burst', 'stream_reconnects')}"),
        ("filter keystroke p50 / max (ms)", lambda r: f"{g(r, 'filter', 'p50_ms')} / {g(r, 'filter', 'max_ms')}"),
        ("console RSS end / peak (MB)", lambda r: f"{g(r, 'rss_end_mb')} / {g(r, 'rss_peak_mb')}"),
    ]
    head = "| metric | " + " | ".join(f"{r['hosts']:,}" for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for name, f in rows:
        lines.append(f"| {name} | " + " | ".join(str(f(r)) for r in results) + " |")
    return "\n".join(lines)
