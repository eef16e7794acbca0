"""A job's log: the backlog, then live lines as the agent sends them, with progress."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, ProgressBar, RichLog, Static

from rm_core.api import Job, JobLogLine
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.format import short_id, size, when
from rm_tui.screens.fleet import STATE_STYLE

RECONNECT_MAX = 30.0


class JobLogScreen(Screen[None]):
    CSS_PATH = "job_log.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("f", "toggle_follow", "Follow on/off"),
        Binding("g", "top", "Top"),
        Binding("G", "bottom", "Bottom", key_display="G"),
    ]

    def __init__(self, job: Job, hostname: str) -> None:
        super().__init__()
        self.job = job
        self.hostname = hostname
        self.lines: list[JobLogLine] = []
        self.last_seq = 0
        self.progress_text = ""

    @property
    def client(self):
        return self.app.client  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="job-info")
        yield ProgressBar(total=100, show_eta=False, id="job-progress")
        yield RichLog(id="log", highlight=False, markup=False, wrap=False, max_lines=100_000)
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"{self.hostname} · {self.job.kind.value} {short_id(self.job.id)}"
        self.render_info()
        self.query_one("#log", RichLog).focus()
        self.follow()

    # ------------------------------------------------------------ stream

    @work(exclusive=True, group="job-log")
    async def follow(self) -> None:
        """Own events connection subscribed to this job; re-subscribes after a drop and
        drops lines already shown (the server replays the backlog from the start)."""
        delay = 1.0
        while True:
            try:
                async with self.client.events() as stream:
                    await stream.subscribe(self.job.id)
                    delay = 1.0
                    async for event in stream:
                        if event.type == "job.log" and event.payload.get("job_id") == self.job.id:
                            self.add_lines(event.payload.get("lines") or [])
                        elif event.type == "error":
                            self.notify(str(event.payload.get("message", "log stream error")), severity="error")
                            return
            except ApiError as exc:
                self.notify(f"{exc.message}; retrying", title="Log stream", severity="warning", timeout=4)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    def add_lines(self, raw: list[dict]) -> None:
        log = self.query_one("#log", RichLog)
        for item in raw:
            try:
                line = JobLogLine.model_validate(item)
            except ValueError:
                continue
            if line.seq <= self.last_seq:
                continue
            self.last_seq = line.seq
            self.lines.append(line)
            style = "red" if line.stream == "stderr" else ""
            stamp = Text(line.ts.astimezone().strftime("%H:%M:%S "), style="dim")
            log.write(stamp + Text(line.text, style=style))

    # ------------------------------------------------------------ job state

    def render_info(self) -> None:
        j = self.job
        state = Text(j.state.value, style=STATE_STYLE.get(j.state, "bold"))
        info = Text.assemble(
            (f"{self.hostname}  ", "bold"), f"{j.kind.value}  ", state,
            f"  ·  created {when(j.created_at)}",
            f"  ·  started {when(j.started_at)}" if j.started_at else "",
            f"  ·  finished {when(j.finished_at)}" if j.finished_at else "",
            f"  ·  exit {j.exit_code}" if j.exit_code is not None else "",
        )
        if self.progress_text and not j.state.terminal:
            info.append(f"\n{self.progress_text}")
        if j.error:
            info.append(f"\n{j.error}", style="red")
        if j.state.terminal and j.summary:
            keys = ("files_new", "files_changed", "data_added", "total_duration", "snapshot_id")
            parts = [f"{k}={j.summary[k]}" for k in keys if k in j.summary]
            if parts:
                info.append("\n" + "  ".join(parts), style="dim")
        self.query_one("#job-info", Static).update(info)
        bar = self.query_one("#job-progress", ProgressBar)
        if j.state.terminal:
            bar.update(total=100, progress=100)

    def on_job_updated(self, message: m.JobUpdated) -> None:
        if message.job.id == self.job.id:
            self.job = message.job
            self.render_info()

    def on_job_progress(self, message: m.JobProgress) -> None:
        if message.job_id != self.job.id:
            return
        p = message.progress
        if isinstance(p.get("percent"), (int, float)):
            self.query_one("#job-progress", ProgressBar).update(total=100, progress=p["percent"])
        parts = []
        if p.get("files_done") is not None:
            parts.append(f"{p['files_done']}" + (f"/{p['files_total']}" if p.get("files_total") else "") + " files")
        if p.get("bytes_done") is not None:
            parts.append(size(p["bytes_done"]) + (f" of {size(p['bytes_total'])}" if p.get("bytes_total") else ""))
        if isinstance(p.get("eta_seconds"), (int, float)):
            parts.append(f"eta {int(p['eta_seconds'])}s")
        self.progress_text = "  ·  ".join(parts)
        self.render_info()

    # ------------------------------------------------------------ keys

    def action_toggle_follow(self) -> None:
        log = self.query_one("#log", RichLog)
        log.auto_scroll = not log.auto_scroll
        if log.auto_scroll:
            log.scroll_end(animate=False)
        self.notify("following new lines" if log.auto_scroll else "follow paused", timeout=2)

    def action_top(self) -> None:
        log = self.query_one("#log", RichLog)
        log.auto_scroll = False
        log.scroll_home(animate=False)

    def action_bottom(self) -> None:
        log = self.query_one("#log", RichLog)
        log.auto_scroll = True
        log.scroll_end(animate=False)
