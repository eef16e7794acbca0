"""A job's log: the backlog, then live lines as the agent sends them, with progress."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Input, ProgressBar, Static

from rm_core.backoff import Backoff
from rm_core.enums import HostStatus, JobState
from rm_core.jobs import Job, JobLogLine
from rm_tui import messages as m
from rm_tui.client import RECONNECT_MAX, ApiError
from rm_tui.format import duration, human_summary, plural, short_id, size, when
from rm_tui.screens.base import ApiScreen
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.styles import job_state
from rm_tui.widgets.log_view import LogView



class JobLogScreen(ApiScreen):
    CSS_PATH = "job_log.tcss"
    MUTATING = frozenset({"cancel", "unlock"})
    BINDINGS = [  # the screen's own keys first in the footer, esc (back) after them
        Binding("f", "toggle_follow", "Follow on/off"),
        Binding("g", "top", "Top", show=False),
        Binding("G", "bottom", "Bottom", key_display="G", show=False),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("c", "cancel", "Cancel job"),
        Binding("u", "unlock", "Run unlock"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, job: Job, hostname: str) -> None:
        super().__init__()
        self.job = job
        self.hostname = hostname
        self.last_seq = 0
        self.host_offline_since: datetime | None = None
        self.progress_text = ""
        self.search_text = ""  # only lines containing it are shown, with it highlighted

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="job-info")
        yield ProgressBar(total=100, show_eta=False, id="job-progress")
        yield LogView(id="log")
        yield Input(placeholder="search the log (enter: keep, esc: clear)", id="search")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"{self.hostname} · {self.job.kind.value} {short_id(self.job.id)}"
        self.render_info()
        self.query_one("#search", Input).display = False
        self.log_view.focus()
        self.follow()

    # ------------------------------------------------------------ stream

    @work(exclusive=True, group="job-log")
    async def follow(self) -> None:
        """Own events connection subscribed to this job; re-subscribes after a drop and
        drops lines already shown (the server replays the backlog from the start)."""
        backoff = Backoff(cap=RECONNECT_MAX)
        while True:
            try:
                async with self.client.events() as stream:
                    await stream.subscribe(self.job.id)
                    backoff.reset()
                    async for event in stream:
                        if event.type == "job.log" and event.payload.get("job_id") == self.job.id:
                            self.add_lines(event.payload.get("lines") or [])
                        elif event.type == "error":
                            self.notify(str(event.payload.get("message", "log stream error")), severity="error")
                            return
            except ApiError as exc:
                self.notify(f"{exc.message}; retrying", title="Log stream", severity="warning", timeout=4)
            await asyncio.sleep(backoff.next())

    def add_lines(self, raw: list[dict[str, Any]]) -> None:
        fresh = []
        for item in raw:
            try:
                line = JobLogLine.model_validate(item)
            except ValueError:
                continue
            if line.seq <= self.last_seq:
                continue
            self.last_seq = line.seq
            fresh.append(line)
        if fresh:
            self.log_view.append(fresh)
            if self.search_text:
                self.render_info()

    @property
    def lines(self) -> list[JobLogLine]:
        return self.log_view.lines

    @property
    def log_view(self) -> LogView:
        return self.query_one("#log", LogView)

    # ------------------------------------------------------------ job state

    def render_info(self) -> None:
        j = self.job
        state = job_state(j, "bold")
        info = Text.assemble(
            (f"{self.hostname}  ", "bold"), f"{j.kind.value}  ", state,
            f"  ·  created {when(j.created_at)}",
            f"  ·  started {when(j.started_at)}" if j.started_at else "",
            f"  ·  finished {when(j.finished_at)}" if j.finished_at else "",
            f"  ·  exit {j.exit_code}" if j.exit_code is not None else "",
        )
        if self.host_offline_since is not None and not j.state.terminal:
            info.append(f"\nhost offline since {self.host_offline_since.astimezone():%H:%M} — outcome unknown until it "
                        "returns", style="bold yellow")
        elif j.cancel_requested and not j.state.terminal:
            info.append("\ncancel requested: restic ends the uploads in flight, then stops (under an upload limit "
                        "that can take the agent's grace, 30 s by default, after which it is killed)", style="yellow")
        elif self.progress_text and not j.state.terminal:
            info.append(f"\n{self.progress_text}")
        if j.error:
            info.append(f"\n{j.error}", style="red")
        if j.state == JobState.lost:
            info.append("\nThe agent lost this job (restarted or crashed mid-run): restic may have left a stale "
                        "lock in the repository.", style="yellow")
            if not self.readonly:
                info.append("  Press u to run unlock.", style="bold yellow")
        if self.search_text:
            info.append(f"\nsearch {self.search_text!r}: {self.log_view.shown_count:,} of "
                        f"{plural(len(self.lines), 'line')}", style="cyan")
        if j.state.terminal and j.summary:
            summary = human_summary(j.summary)
            if summary:
                info.append("\n" + summary, style="dim")
        self.query_one("#job-info", Static).update(info)
        bar = self.query_one("#job-progress", ProgressBar)
        if j.state in (JobState.succeeded, JobState.warning):
            bar.update(total=100, progress=100)
        # lost, cancelled or failed: a full bar would claim it finished; show no bar. Nor while a
        # cancel is under way: restic reports no progress then, the bar would only look frozen
        bar.display = (not j.state.terminal and not j.cancel_requested) or j.state in (JobState.succeeded,
                                                                                      JobState.warning)

    def on_job_updated(self, message: m.JobUpdated) -> None:
        if message.job.id == self.job.id:
            self.job = message.job
            self.render_info()
            self.refresh_bindings()  # cancel / unlock depend on the state

    def on_host_updated(self, message: m.HostUpdated) -> None:
        host = message.host
        if host.id != self.job.host_id:
            return
        offline = host.status == HostStatus.offline
        since = (host.last_seen or datetime.now(timezone.utc)) if offline else None
        if since != self.host_offline_since:
            self.host_offline_since = since
            self.render_info()

    def on_job_progress(self, message: m.JobProgress) -> None:
        if message.job_id != self.job.id:
            return
        p = message.progress
        if isinstance(p.get("percent"), (int, float)):
            self.query_one("#job-progress", ProgressBar).update(total=100, progress=p["percent"])
        parts = []
        if p.get("files_done") is not None:
            parts.append(f"{p['files_done']:,}" + (f" of {p['files_total']:,}" if p.get("files_total") else "") + " files")
        if p.get("bytes_done") is not None:
            parts.append(size(p["bytes_done"]) + (f" of {size(p['bytes_total'])}" if p.get("bytes_total") else ""))
        if isinstance(p.get("eta_seconds"), (int, float)):
            parts.append(f"eta {duration(p['eta_seconds'])}")
        self.progress_text = "  ·  ".join(parts)
        self.render_info()

    # ------------------------------------------------------------ keys

    def action_toggle_follow(self) -> None:
        log = self.log_view
        if log.follow:
            log.follow = False
        else:
            log.bottom()
        self.notify("following new lines" if log.follow else "follow paused", timeout=2)

    def action_top(self) -> None:
        self.log_view.top()

    def action_bottom(self) -> None:
        self.log_view.bottom()

    # ------------------------------------------------------------ search

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#search")
    def search_changed(self, event: Input.Changed) -> None:
        self.search_text = event.value.strip()
        self.log_view.set_search(self.search_text)
        self.render_info()

    @on(Input.Submitted, "#search")
    def search_done(self) -> None:
        if not self.search_text:
            self.query_one("#search", Input).display = False
        self.log_view.focus()

    def action_back(self) -> None:
        """esc clears an active search first, then leaves the screen."""
        box = self.query_one("#search", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.search_text = ""
            self.log_view.set_search("")
            self.render_info()
            self.log_view.focus()
            return
        self.dismiss()

    # ------------------------------------------------------------ cancel and unlock

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel" and (self.job.state.terminal or self.job.cancel_requested):
            return False
        if action == "unlock" and self.job.state != JobState.lost:
            return False
        return super().check_action(action, parameters)

    def action_cancel(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel_job()

        self.app.push_screen(ConfirmDialog(f"Cancel this {self.job.kind.value} job on {self.hostname}?",
                                           yes="Cancel job"), answered)

    @work(group="job-action")
    async def cancel_job(self) -> None:
        try:
            job = await self.client.cancel_job(self.job.id)
        except ApiError as exc:
            self.report(exc, "Cannot cancel")
            return
        if not self.job.state.terminal:  # the job.updated that ended it may have come first
            self.job = job
        self.render_info()
        self.refresh_bindings()
        self.notify("cancel requested" if not job.state.terminal else f"job {job.state.value}")

    def action_unlock(self) -> None:
        self.run_unlock()

    @work(group="job-action")
    async def run_unlock(self) -> None:
        try:
            job = await self.client.create_job(self.job.host_id, {"kind": "unlock"})
        except ApiError as exc:
            self.report(exc, "Cannot run unlock")
            return
        self.notify(f"unlock {job.state.value} (job {short_id(job.id)}); opening its log")
        self.app.switch_screen(JobLogScreen(job, self.hostname))
