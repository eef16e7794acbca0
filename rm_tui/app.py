"""The Textual app: owns the API client and the events stream, routes events to screens."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from rm_core.api import AuditEntry, Host
from rm_core.backoff import Backoff
from rm_core.jobs import Job
from rm_tui import messages as m
from rm_tui.client import RECONNECT_MAX, ApiError, Client, Event
# imported with the app, not at sign-in: the fleet screen pulls in every screen it opens
# (~100+ ms), which the operator would otherwise wait for after pressing enter
from rm_tui.screens.base import ApiScreen
from rm_tui.screens.fleet import FLEET_CHANGES, FleetScreen
from rm_tui.screens.login import LoginScreen


class RmTui(App[None]):
    """restic-manager console."""

    TITLE = "restic-manager"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "toggle_help", "Help", key_display="?"),
        Binding("colon", "command_palette", "Go to…", key_display=":", show=False),
    ]

    def __init__(self, server_url: str, fingerprint: str | None = None, readonly: bool = False) -> None:
        super().__init__()
        self.server_url = server_url
        self.fingerprint = fingerprint
        self.readonly = readonly
        self.client = Client(server_url, fingerprint)
        self.events_connected = False
        self.events_epoch = 0  # +1 per (re)connection: a screen loads once per connection, not per message
        self._host_list: tuple[int, asyncio.Task[list[Host]]] | None = None
        self.held_keys: list[events.Key] = []  # typed while a form opened (on_event)
        # the latest keys and the screen in front when each arrived (on_event)
        self.keys_sent: deque[tuple[events.Key, Screen[object]]] = deque(maxlen=256)

    def on_mount(self) -> None:
        self.sub_title = self.server_url
        self.push_screen(LoginScreen(self.server_url))

    # ------------------------------------------------------------ keys typed ahead

    async def on_event(self, event: events.Event) -> None:
        """Keys typed ahead reach the screen they were typed for.

        The app hands every key to the focused widget as it arrives, and a key's binding runs
        when the key comes back up unhandled. Typed in one burst ("n", a name, Tab, a path),
        the name went to the table before `n` had opened the form, came back with the form
        in front and was dropped. Such a key is handed again to the screen now in front; and
        while a form is opening (FormScreen.ready), keys wait until its first field has focus."""
        if isinstance(event, events.Key):
            if not self.screen_stack:
                return  # the app is closing: no screen is left to take it
            if not event.is_forwarded:
                await self.release_keys()  # those held before it go first
                if not self.screen_ready():
                    self.held_keys.append(event)
                    return
                self.keys_sent.append((event, self.screen))
            else:
                sent_to = next((screen for key, screen in self.keys_sent if key is event), self.screen)
                if sent_to is not self.screen:
                    await self.on_event(events.Key(event.key, event.character))
                    return
        await super().on_event(event)

    def screen_ready(self) -> bool:
        return bool(getattr(self.screen, "ready", True)) if self.screen_stack else True

    async def on_screen_ready(self, _: m.ScreenReady) -> None:
        await self.release_keys()

    async def release_keys(self) -> None:
        """The held keys, in order, while the screen in front takes keys (a key that opens
        another form holds the rest again)."""
        while self.held_keys and self.screen_ready():
            await super().on_event(self.held_keys.pop(0))

    async def on_unmount(self) -> None:
        self.workers.cancel_all()
        await self.client.close()

    @property
    def can_write(self) -> bool:
        """False with --readonly or for a viewer: every mutating action is hidden and refused."""
        return not self.readonly and self.client.role not in (None, "viewer")

    @property
    def is_admin(self) -> bool:
        return self.client.role == "admin"

    def use_server(self, url: str) -> None:
        """The login screen may point at another server than --server: start a fresh client."""
        url = url.strip().rstrip("/")
        if url == self.client.base_url:
            return
        old = self.client
        self.client = Client(url, self.fingerprint)
        self.server_url = url
        self.sub_title = url
        self.run_worker(old.close(), group="cleanup")

    def on_logged_in(self, message: m.LoggedIn) -> None:
        op = message.operator
        self.sub_title = f"{op.username} ({op.role}{', read-only' if self.readonly else ''}) @ {self.server_url}"
        self.switch_screen(FleetScreen())
        self.follow_events()

    def report(self, exc: ApiError, title: str) -> None:
        """Show a failed call as a toast; a dead session sends the operator back to sign in."""
        if exc.status == 401 and self.client.token:
            self.session_expired()
        else:
            self.notify(exc.message, title=title, severity="error")

    def session_expired(self) -> None:
        self.client.token = None
        self.workers.cancel_group(self, "events")
        self.events_connected = False
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(LoginScreen(self.server_url))
        self.notify("Your session ended (expired or signed out elsewhere): sign in again",
                    title="Signed out", severity="warning", timeout=10)

    # ------------------------------------------------------------ navigation

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "command_palette" and not self.client.token:
            return False  # nothing to jump to before signing in
        return True

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        if self.client.token:
            yield SystemCommand("Fleet", "All hosts, live", lambda: self.go_to("fleet"))
            if self.client.role != "viewer":
                yield SystemCommand("Enrollment", "Enrollment tokens and the install command for a new host",
                                    lambda: self.go_to("enrollment"))
            yield SystemCommand("Audit", "Who changed what, newest first", lambda: self.go_to("audit"))
            if self.is_admin:
                yield SystemCommand("Operators", "Operator accounts and roles", lambda: self.go_to("operators"))
                yield SystemCommand("Channels", "Notification channels: where alerts go (mail, Slack, ntfy …)",
                                    lambda: self.go_to("channels"))
        yield from super().get_system_commands(screen)

    def go_to(self, name: str) -> None:
        """Back to the fleet (the bottom of the stack), then open `name` on top of it."""
        from rm_tui.screens.audit import AuditScreen
        from rm_tui.screens.channels import ChannelsScreen
        from rm_tui.screens.enrollment import EnrollmentScreen
        from rm_tui.screens.operators import OperatorsScreen

        while len(self.screen_stack) > 2 and not isinstance(self.screen, FleetScreen):
            self.pop_screen()
        factories: dict[str, type[Screen[Any]]] = {"enrollment": EnrollmentScreen, "audit": AuditScreen,
                                                   "operators": OperatorsScreen, "channels": ChannelsScreen}
        if name in factories:
            self.push_screen(factories[name]())

    def action_toggle_help(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    # ------------------------------------------------------------ events stream

    def _prefetch_host_list(self) -> None:
        """Ask for the host list as soon as the stream is up (after it: nothing is missed in
        between), while the fleet screen is still being built: at sign-in the server builds
        the list on one core while this process composes the screen on the other."""
        if self._host_list is not None:
            self._host_list[1].cancel()
        task = asyncio.ensure_future(self.client.hosts())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a failure is reported by its taker
        self._host_list = (self.events_epoch, task)

    async def host_list(self, epoch: int) -> list[Host]:
        """The hosts as listed after connection `epoch` was made: the prefetched list once, then fresh ones."""
        prefetched, self._host_list = self._host_list, None
        if prefetched is not None and prefetched[0] == epoch:
            return await prefetched[1]
        if prefetched is not None:
            prefetched[1].cancel()
        return await self.client.hosts()

    def broadcast(self, message: m.ServerEvent) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, FleetScreen) and isinstance(message, FLEET_CHANGES):
                # Handed down, not posted: the fleet takes every event (thousands a second in a
                # reconnect storm) and Textual's dispatch of a message cost more than applying it.
                screen.apply(message)
            elif isinstance(screen, ApiScreen):
                # Only screens that show server data. Textual repaints the whole top screen
                # whenever a screen below it (even the empty default one) wakes up with a repaint
                # pending, so a message to a screen that ignores it cost a full frame per event.
                screen.post_message(message)

    @work(exclusive=True, group="events")
    async def follow_events(self) -> None:
        """Keep the events stream open for the whole session, reconnecting with backoff."""
        backoff = Backoff(cap=RECONNECT_MAX)
        while True:
            try:
                async with self.client.events() as stream:
                    if backoff.attempt:
                        self.notify("live updates resumed", timeout=3)
                    backoff.reset()
                    self.events_connected = True
                    self.events_epoch += 1
                    self._prefetch_host_list()
                    self.broadcast(m.EventsConnected())
                    async for event in stream:
                        message = to_message(event)
                        if message is not None:
                            self.broadcast(message)
                    reason = f"events stream closed by the server{stream.close_reason}"
            except ApiError as exc:
                if exc.status == 401:
                    self.session_expired()
                    return
                reason = exc.message
            if self.events_connected:
                self.notify(f"{reason}; reconnecting", severity="warning", timeout=5)
            self.events_connected = False
            self.broadcast(m.EventsLost(reason))
            await asyncio.sleep(backoff.next())


def to_message(event: Event) -> m.ServerEvent | None:
    """An events frame as the message screens handle; None for types nobody shows yet."""
    p = event.payload
    try:
        if event.type == "host.updated":
            if p.get("deleted"):
                return m.HostDeleted(p["id"])
            return m.HostUpdated(Host.model_validate(p))
        if event.type == "job.updated":
            return m.JobUpdated(Job.model_validate(p))
        if event.type == "job.progress":
            return m.JobProgress(p.get("host_id"), p["job_id"], p)
        if event.type == "schedule.updated":
            version, applied, crons = p.get("version"), p.get("applied_version"), p.get("crons")
            return m.ScheduleUpdated(p["host_id"], int(version) if version is not None else None,
                                     int(applied) if applied is not None else None,
                                     None if crons is None else [(c["cron"], c.get("timezone") or "UTC")
                                                                 for c in crons])
        if event.type == "audit.appended":
            return m.AuditAppended(AuditEntry.model_validate(p))
    except (ValueError, KeyError, TypeError):
        return None  # a newer server may send shapes this console cannot read
    return None


def make_app(server_url: str, fingerprint: str | None = None, readonly: bool = False) -> RmTui:
    """The one way to build the app, for the CLI and for tests."""
    return RmTui(server_url, fingerprint, readonly)
