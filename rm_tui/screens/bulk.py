"""One action on every marked host: run a source group or schedule by name, or unlock.

The choices are what the marked hosts actually have (a name present on at least one of
them, with how many); the action runs only where the name exists, a few hosts at a time,
and one toast says where it started and where it did not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, OptionList
from textual.widgets.option_list import Option

from rm_core.api import Host
from rm_tui.client import ApiError, Client
from rm_tui.format import plural
from rm_tui.screens.base import console

CONCURRENCY = 8
Call = Callable[[], Awaitable[object]]


class BulkActionScreen(ModalScreen[None]):
    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]

    def __init__(self, hosts: list[Host]) -> None:
        super().__init__()
        self.hosts = hosts
        self.choices: dict[str, tuple[str, list[tuple[str, Call]]]] = {}  # option id -> (label, calls)
        self.running = False

    @property
    def client(self) -> Client:
        return console(self).client

    def compose(self) -> ComposeResult:
        with Vertical(id="bulk-box", classes="dialog"):
            yield Label(f"Run on {plural(len(self.hosts), 'marked host')}", id="bulk-title")
            yield Label("reading source groups and schedules…", id="bulk-hint")
            yield OptionList(id="bulk-choices")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        self.gather()

    def action_dismiss_none(self) -> None:
        if not self.running:
            self.dismiss(None)

    @work(exclusive=True, group="bulk")
    async def gather(self) -> None:
        sem = asyncio.Semaphore(CONCURRENCY)
        groups: dict[str, list[tuple[str, Call]]] = {}
        schedules: dict[str, list[tuple[str, Call]]] = {}
        failed: list[str] = []

        async def one(host: Host) -> None:
            async with sem:
                try:
                    gs = await self.client.source_groups(host.id)
                    ss = await self.client.schedules(host.id)
                except ApiError as exc:
                    failed.append(f"{host.hostname}: {exc.message}")
                    return
            for g in gs:
                groups.setdefault(g.name, []).append(
                    (host.hostname, partial(self.client.run_source_group, host.id, g.id)))
            for s in ss.schedules:
                schedules.setdefault(s.name, []).append(
                    (host.hostname, partial(self.client.run_schedule, host.id, s.id)))

        await asyncio.gather(*(one(h) for h in self.hosts))
        options: list[Option] = []
        for kind, found in (("source group", groups), ("schedule", schedules)):
            for name in sorted(found):
                oid = f"{kind}:{name}"
                label = f"run {kind} {name!r} now — on {plural(len(found[name]), 'host')}"
                self.choices[oid] = (f"run-now of {kind} {name!r}", found[name])
                options.append(Option(label, id=oid))
        self.choices["unlock"] = ("unlock", [(h.hostname, partial(self.client.create_job, h.id, {"kind": "unlock"}))
                                             for h in self.hosts])
        options.append(Option(f"unlock the repository — on {plural(len(self.hosts), 'host')}", id="unlock"))
        hint = "enter runs the highlighted action · esc cancels"
        if failed:
            hint = f"could not read {plural(len(failed), 'host')} ({failed[0]}) · " + hint
        self.query_one("#bulk-hint", Label).update(hint)
        choices = self.query_one(OptionList)
        choices.add_options(options)
        choices.highlighted = 0

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        if not self.running and event.option_id in self.choices:
            self.running = True
            self.run_all(*self.choices[event.option_id])

    @work(exclusive=True, group="bulk")
    async def run_all(self, what: str, calls: list[tuple[str, Call]]) -> None:
        self.query_one("#bulk-hint", Label).update(f"{what}: starting on {plural(len(calls), 'host')}…")
        sem = asyncio.Semaphore(CONCURRENCY)
        errors: list[str] = []

        async def one(hostname: str, call: Call) -> None:
            async with sem:
                try:
                    await call()
                except ApiError as exc:
                    errors.append(f"{hostname}: {exc.message}")

        await asyncio.gather(*(one(n, c) for n, c in calls))
        ok = len(calls) - len(errors)
        if errors:
            self.app.notify(f"{what} started on {plural(ok, 'host')}; refused on {len(errors):,}: "
                            + "; ".join(errors[:3]), title="Run on marked", severity="warning", timeout=10)
        else:
            self.app.notify(f"{what} started on {plural(ok, 'host')}", title="Run on marked")
        self.dismiss(None)
