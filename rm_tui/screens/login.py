"""Connect and sign in: server URL prefilled, focus on the username, Enter signs in."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label

from rm_tui.client import ApiError
from rm_tui.messages import LoggedIn
from rm_tui.screens.base import console


class LoginScreen(Screen[None]):
    CSS_PATH = "login.tcss"
    # Focus is set while composing, before any queued key is handled. A focus() in on_mount
    # is deferred (call_later) behind keys a password manager has already typed: they went
    # to the Server field and the Tab moved focus from there, so the password landed in
    # Username. The URL is usually right already (from --server); the username comes first.
    AUTO_FOCUS = "#username"
    BINDINGS = [
        Binding("escape", "clear_password", "Clear password", show=False),
        # A key is forwarded to whichever widget has focus when the app receives it, but a
        # plain `tab` binding only runs after the key has bubbled up from that widget, so in
        # a burst ("user", Tab, "password", Enter from a password manager) the password was
        # already queued to the Username field. Priority bindings run on receipt.
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
        # Keys typed before the terminal is in raw mode pass the tty's ICRNL: Enter arrives
        # as ctrl+j. Not a priority binding, so it waits behind the characters before it.
        Binding("ctrl+j", "submit", "Sign in", show=False),
    ]

    def __init__(self, server_url: str) -> None:
        super().__init__()
        self.server_url = server_url

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="login-box"):
            yield Label("Sign in to restic-manager", id="login-title")
            yield Label("Server")
            yield Input(self.server_url, placeholder="https://backup.example:8950", id="server")
            yield Label("Username")
            yield Input(placeholder="username", id="username")
            yield Label("Password")
            yield Input(placeholder="password", password=True, id="password")
            yield Button("Sign in", variant="primary", id="sign-in")
            yield Label("tab next field · enter sign in · ctrl+q quit", id="login-hint")
        yield Footer()

    def action_clear_password(self) -> None:
        self.query_one("#password", Input).value = ""

    def action_submit(self) -> None:
        self.submit()

    @on(Input.Submitted)
    @on(Button.Pressed, "#sign-in")
    def submit(self) -> None:
        server = self.query_one("#server", Input).value.strip()
        username = self.query_one("#username", Input).value.strip()
        password = self.query_one("#password", Input).value
        if not server:
            self.notify("Enter the server URL", severity="error")
            self.query_one("#server", Input).focus()
        elif not username:
            self.query_one("#username", Input).focus()
        elif not password:
            self.query_one("#password", Input).focus()
        else:
            self.sign_in(server, username, password)

    @work(exclusive=True, group="login")
    async def sign_in(self, server: str, username: str, password: str) -> None:
        button = self.query_one("#sign-in", Button)
        button.disabled = True
        try:
            try:
                console(self).use_server(server)
            except ValueError as exc:
                self.notify(str(exc), title="Cannot connect", severity="error")
                return
            operator = await console(self).client.login(username, password)
        except ApiError as exc:
            self.notify(exc.message, title="Sign-in failed", severity="error")
            self.query_one("#password", Input).value = ""
            self.query_one("#password", Input).focus()
            return
        finally:
            button.disabled = False
        self.post_message(LoggedIn(operator))
