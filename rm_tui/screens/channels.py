"""Notification channels (admins only): where alerts go, as Apprise URLs; list, add, edit,
test and delete them, and see how each one's sending goes (its last error stays visible)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Input, Static

from rm_core.alerts import DEFAULT_INTERVAL_S, EVENT_TITLES, AlertEvent, Channel
from rm_tui.client import ApiError
from rm_tui.format import when
from rm_tui.screens.base import TableScreen
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.form_base import FormError, FormScreen, field_label
from rm_tui.widgets.check import Check
from rm_tui.widgets.table import Column, ResourceTable

PATH = "/notification-channels"
CHANNEL_COLUMNS = [Column("name", "Name", 18), Column("url", "URL", 30), Column("events", "Events", 9),
                   Column("state", "State", 10), Column("sent", "Last sent", 12), Column("error", "Last error", 0)]


def state_of(c: Channel) -> Text:
    if c.failures:
        return Text(f"failing ×{c.failures}", style="red")
    if c.pending:
        return Text(f"{c.pending} waiting", style="yellow")
    return Text("ok" if c.last_sent_at else "never sent", style="green" if c.last_sent_at else "dim")


class ChannelForm(FormScreen):
    """A new channel, or a change: the whole channel, URL included (it is never shown again)."""

    def __init__(self, values: dict[str, Any] | None = None, error: str | None = None, editing: bool = False) -> None:
        super().__init__(values, error)
        self.editing = editing
        self.title_text = f"Channel {self.values.get('name', '')}" if editing else "New notification channel"

    def fields(self) -> ComposeResult:
        v = self.values
        yield field_label("Name")
        yield Input(v.get("name") or "", id="name")
        yield field_label("Apprise URL (mailto://, slack://, ntfy://, json:// …)"
                          + (" — the saved one is secret: type it again" if self.editing else ""))
        yield Input(v.get("url") or "", id="url",
                    placeholder="mailtos://user:app-password@smtp.example.com?to=ops@example.com")
        yield field_label("Events")
        chosen = set(v.get("events") or [AlertEvent.backup_failed.value])
        for event in AlertEvent:
            yield Check(f"{event.value}: {EVENT_TITLES[event]}", event.value in chosen,
                        id=f"ev-{event.value.replace('.', '-')}")
        yield field_label("Seconds between two digests of one kind")
        yield Input(str(v.get("min_interval_s", DEFAULT_INTERVAL_S)), id="min_interval_s")

    def collect(self) -> dict[str, Any]:
        name, url = self.text("name"), self.text("url")
        if not name:
            raise FormError("name", "a channel needs a name")
        if "://" not in url:
            raise FormError("url", "the URL is an Apprise URL: scheme://… (the saved one is never shown again)")
        events = [e.value for e in AlertEvent if self.switch(f"ev-{e.value.replace('.', '-')}")]
        if not events:
            raise FormError(f"ev-{AlertEvent.backup_failed.value.replace('.', '-')}", "choose at least one event")
        interval = self.number("min_interval_s", "seconds between digests")
        return {"name": name, "url": url, "events": events,
                "min_interval_s": DEFAULT_INTERVAL_S if interval is None else interval}


class ChannelsScreen(TableScreen):
    CSS_PATH = "tables.tcss"
    TABLE_ID = "channels"
    MUTATING = frozenset({"new", "edit", "delete", "test"})
    BINDINGS = [  # the screen's own keys first in the footer, esc (back) after them
        Binding("n", "new", "New channel"),
        Binding("e", "edit", "Edit"),
        Binding("enter", "edit", "Edit", show=False),
        Binding("t", "test", "Test"),
        Binding("ctrl+d", "delete", "Delete"),
        Binding("ctrl+r", "reload", "Reload", show=False),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.channels: dict[str, Channel] = {}
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Where alerts go: each channel is an Apprise URL and the events it follows. Events of one "
                     "kind arrive as one digest; a failing channel is retried and shows its last error.",
                     classes="screen-hint")
        yield ResourceTable(CHANNEL_COLUMNS, self.cells, id="channels", empty="loading channels…")
        yield Static("", id="channel-detail", classes="screen-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Notification channels"
        self.load()

    def cells(self, channel_id: str) -> list[Text | str]:
        c = self.channels[channel_id]
        return [c.name, c.url, str(len(c.events)), state_of(c), when(c.last_sent_at),
                Text(c.last_error or "", style="red" if c.failures else "dim")]

    def listed(self) -> None:
        self.show([c.id for c in sorted(self.channels.values(), key=lambda c: c.name)])
        self.describe(self.table.cursor_key)

    def on_resource_table_highlighted(self, message: ResourceTable.Highlighted) -> None:
        self.describe(message.key)

    def describe(self, channel_id: str | None) -> None:
        """The row under the cursor in full, below the table: the error a cell cuts short."""
        c = self.channels.get(channel_id or "")
        text = Text()
        if c is not None:
            text.append(f"{c.name}: {c.url} · every {c.min_interval_s} s at most · {', '.join(c.events)}")
            if c.pending:
                text.append(f"\n{c.pending} event(s) waiting", style="yellow")
                if c.next_retry_at:
                    text.append(f", next try {when(c.next_retry_at)}", style="yellow")
            if c.last_error:
                text.append(f"\nlast error ({when(c.last_error_at)}): {c.last_error}",
                            style="red" if c.failures else "dim")
        self.query_one("#channel-detail", Static).update(text)

    @work(exclusive=True, group="channels-load")
    async def load(self) -> None:
        try:
            body = await self.client.request("GET", PATH)
        except ApiError as exc:
            self.report(exc, "Cannot list notification channels")
            return
        self.channels = {c.id: c for c in (Channel.model_validate(x) for x in body["channels"])}
        self.loaded = True
        if not self.channels:
            self.table.empty = "no channel yet: n adds one"
        self.listed()

    def action_reload(self) -> None:
        self.load()

    def selected(self) -> Channel | None:
        key = self.table.cursor_key
        if key is None or key not in self.channels:
            self.notify("No channel selected", severity="warning")
            return None
        return self.channels[key]

    def action_new(self, values: dict[str, Any] | None = None, error: str | None = None) -> None:
        self.push_form(ChannelForm(values, error), lambda body: self.save(body, None))

    def action_edit(self, values: dict[str, Any] | None = None, error: str | None = None) -> None:
        c = self.selected()
        if c is None:
            return
        current = {"name": c.name, "events": [e.value for e in c.events], "min_interval_s": c.min_interval_s,
                   **(values or {})}
        self.push_form(ChannelForm(current, error, editing=True), lambda body: self.save(body, c.id))

    @work(group="channels-save")
    async def save(self, body: dict[str, Any], channel_id: str | None) -> None:
        try:
            if channel_id:
                raw = await self.client.request("PUT", f"{PATH}/{channel_id}", json=body)
            else:
                raw = await self.client.request("POST", PATH, json=body)
        except ApiError as exc:
            self.report(exc, "Cannot save the channel")
            if exc.status in (400, 409):
                (self.action_edit if channel_id else self.action_new)(body, exc.message)
            return
        saved = Channel.model_validate(raw)
        self.notify(f"channel {saved.name} saved")
        self.channels[saved.id] = saved
        self.listed()
        self.table.move_to(saved.id)

    def action_test(self) -> None:
        c = self.selected()
        if c is not None:
            self.notify(f"sending a test message through {c.name}…")
            self.test(c.id)

    @work(group="channels-test")
    async def test(self, channel_id: str) -> None:
        try:
            raw = await self.client.request("POST", f"{PATH}/{channel_id}/test")
        except ApiError as exc:
            self.report(exc, "The test message did not go through")
            self.load()  # the channel's last error, as the server now shows it
            return
        channel = Channel.model_validate(raw["channel"])
        self.channels[channel.id] = channel
        self.table.invalidate([channel.id])
        self.describe(self.table.cursor_key)
        self.notify(f"test message sent through {channel.name}")

    def action_delete(self) -> None:
        c = self.selected()
        if c is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete(c.id)

        self.app.push_screen(ConfirmDialog(f"Delete channel {c.name}? Digests waiting for it are dropped."),
                             answered)

    @work(group="channels-save")
    async def delete(self, channel_id: str) -> None:
        try:
            await self.client.request("DELETE", f"{PATH}/{channel_id}")
        except ApiError as exc:
            self.report(exc, "Cannot delete the channel")
            return
        self.notify("channel deleted")
        self.channels.pop(channel_id, None)
        self.listed()
