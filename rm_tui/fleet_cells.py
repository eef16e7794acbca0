"""Cells of the fleet table that take more than one line to say: a host's last verification
and its copy lag (pure: a host in, rich Text out); and the status line above the table."""

from __future__ import annotations

from rich.text import Text

from rm_core.api import Host
from rm_tui.fleet_model import FAILED, FleetModel, copy_late
from rm_tui.format import age, plural, verified
from rm_tui.styles import VERIFIED_STYLE


def verified_cell(host: Host) -> Text:
    lv = host.last_verified
    if lv is None:
        return Text("overdue", style="bold red") if host.drill_overdue else Text("")
    if host.drill_overdue and lv.state not in FAILED:
        # a good drill long ago, or of another group: the overdue group is what needs action
        return Text("overdue", style="bold red")
    return Text(verified(lv.state.value, lv.finished_at), style=VERIFIED_STYLE.get(lv.state, "bold red"))


def copy_cell(host: Host) -> Text:
    """The copy lag: blank without a copy, "ok" when the copy has every snapshot, else how long
    it has missed one (red once past the group's max lag)."""
    if not host.copy_enabled:
        return Text("")
    if host.copy_behind_since is None:
        return Text("ok", style="green")
    return Text(age(host.copy_behind_since), style="bold red" if copy_late(host) else "yellow")


def name_cell(host: Host) -> Text:
    name = Text(host.hostname, style="bold red" if host.stale or host.open_anomalies else "")
    if host.open_anomalies:
        name.append(" anomaly", style="reverse red")
    if host.stale:
        name.append(" stale", style="reverse red")
    return name


def status_line(model: FleetModel, marked: int, live: bool) -> str:
    """Counts per status, how many are shown, the sort, the filter, the marks (console markup)."""
    c = model.counts()
    if not c["hosts"]:
        return "no hosts enrolled yet: create an enrollment token (n) and run its install command on the host"
    parts = []
    shown = len(model.visible())
    if shown != c["hosts"] or model.filter_text:  # first: the line shares its row with the filter box
        parts.append(f"{shown:,} shown")
    if model.filter_text:
        parts.append(f"filter: {model.filter_text!r}")
    parts += [plural(c["hosts"], "host"), f"[green]{c.get('online', 0):,} online[/]",
              f"[red]{c.get('offline', 0):,} offline[/]", f"[yellow]{c.get('pending', 0):,} pending[/]"]
    for key, style, label in (("anomaly", "bold red", "anomaly"), ("stale", "bold red", "stale"),
                              ("failed", "red", "failed"), ("drill", "red", "drill failed"),
                              ("copy", "red", "copy late"), ("drift", "yellow", "drift")):
        if c.get(key):
            parts.append(f"[{style}]{c[key]:,} {label}[/]")
    parts.append(f"sorted by {model.sort_label()}")
    if marked:
        parts.append(f"[reverse]{plural(marked, 'host')} marked[/]")
    if not live:
        parts.append("[reverse yellow] live updates paused [/]")
    return "  ·  ".join(parts)
