"""The maintenance tab: forget, prune and check, each a cron the server runs in UTC; `e` edits."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from rm_core.api import Host, Maintenance
from rm_core.cron import CronError, next_fires
from rm_tui.client import ApiError
from rm_tui.format import when
from rm_tui.host_tabs.base import HostTab
from rm_tui.screens.forms import MaintenanceForm


def maintenance_summary(mt: Maintenance | None) -> str:
    mt = mt or Maintenance()
    on_ = [f"{n} {getattr(mt, n).cron}" for n in ("forget", "prune", "check") if getattr(mt, n).enabled]
    return ", ".join(on_) if on_ else "all off"


class MaintenanceTab(HostTab, can_focus=True):
    MUTATING = frozenset({"edit"})
    BINDINGS = [Binding("e", "edit", "Edit")]

    def __init__(self, host: Host, *, id: str | None = None) -> None:
        super().__init__(host, id=id)
        self.maintenance: Maintenance | None = None

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="maintenance-text", classes="pane-text")

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="maintenance-load")
    async def load(self) -> None:
        try:
            self.maintenance = await self.client.maintenance(self.host.id)
        except ApiError as exc:
            self.report(exc, "Cannot load maintenance")
            return
        if not self.is_mounted:
            return  # the screen closed while this loaded
        self.loaded = True
        self.render_text()

    def render_text(self) -> None:
        mt = self.maintenance or Maintenance()
        now = datetime.now(timezone.utc)
        lines = ["[b]Maintenance[/] (run by the server, in UTC, while the host is online)", ""]
        for name in ("forget", "prune", "check"):
            task = getattr(mt, name)
            state = "[green]on[/]" if task.enabled else "[dim]off[/]"
            nxt = ""
            if task.enabled and task.cron:
                try:
                    nxt = f"  next {when(next_fires(task.cron, 'UTC', now, 1)[0])}"
                except CronError as exc:
                    nxt = f"  [red]{escape(str(exc))}[/]"
            extra = f"  read-data-subset {task.read_data_subset}" if name == "check" and task.read_data_subset else ""
            lines.append(f"  {name:<7} {state:<16} {escape(task.cron or '—')}{nxt}{extra}")
        if not self.readonly:
            lines += ["", "[dim]e edit[/]"]
        if (text := self.part("#maintenance-text", Static)) is not None:
            text.update("\n".join(lines))

    def action_edit(self) -> None:
        self.form((self.maintenance or Maintenance()).model_dump(mode="json"))

    def form(self, values: dict[str, Any], error: str | None = None) -> None:
        self.push_form(MaintenanceForm(values, error), self.save)

    @work(group="host-save")
    async def save(self, body: dict[str, Any]) -> None:
        try:
            self.maintenance = await self.client.set_maintenance(self.host.id, body)
        except ApiError as exc:
            if self.refused(exc, "Cannot save maintenance"):
                self.form(body, exc.message)
            return
        self.render_text()
        self.notify(f"maintenance saved: {maintenance_summary(self.maintenance)}")
