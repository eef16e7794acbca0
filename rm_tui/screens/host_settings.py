"""The host screen's Maintenance and Settings tabs: bandwidth, repository, admin
credentials for prune, and deleting the host. Every setting a host needs, in the console.

A mixin of HostScreen (it uses the screen's client, host and render helpers); the
repository form and the shown-once password dialog live here too."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static, Switch

from rm_core.api import Maintenance, RepoInfo
from rm_core.cron import CronError, next_fires
from rm_tui.client import ApiError
from rm_tui.format import size, when
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.forms import BandwidthForm, FormError, FormScreen, MaintenanceForm, _label

# restic stats keys as the settings tab names them (others are not shown raw)
STAT_NAMES = {"total_size": "stored", "total_file_count": "files", "snapshots_count": "snapshots",
              "total_uncompressed_size": "uncompressed"}


def kbps(bw: dict[str, Any], key: str) -> str:
    return f"{bw[key]:,} KiB/s" if bw.get(key) else "unlimited"


def maintenance_summary(mt: Maintenance | None) -> str:
    mt = mt or Maintenance()
    on_ = [f"{n} {getattr(mt, n).cron}" for n in ("forget", "prune", "check") if getattr(mt, n).enabled]
    return ", ".join(on_) if on_ else "all off"


class RepoForm(FormScreen):
    """PUT /hosts/{id}/repo (or /repo/admin-credentials): URL, a generated or typed password,
    optional REST server user/password. The password is never read back from the server."""

    def __init__(self, admin: bool, values: dict[str, Any] | None = None, error: str | None = None) -> None:
        super().__init__(values, error)
        self.admin = admin
        self.title_text = ("Admin credentials (append-only repositories: prune needs them)" if admin
                           else "Repository")

    def fields(self) -> ComposeResult:
        v = self.values
        yield _label("URL (rest:https://…, s3:…, sftp:…, /local/path)")
        yield Input(v.get("url", ""), id="url", placeholder="rest:https://backup.example:8000/web-1")
        with Horizontal(classes="switch-row"):
            yield Switch(bool(v.get("generate_password", not v.get("password"))), id="generate_password")
            yield Label("generate a password (shown once after saving)")
        yield _label("or the repository password")
        yield Input(v.get("password", ""), id="password", password=True)
        yield _label("REST server user (empty: none)")
        yield Input(v.get("rest_user", "") or "", id="rest_user")
        yield _label("REST server password (empty + generate: generated too)")
        yield Input(v.get("rest_password", "") or "", id="rest_password", password=True)

    def collect(self) -> dict[str, Any]:
        url = self.text("url")
        if not url:
            raise FormError("url", "the repository URL is required")
        generate = self.switch("generate_password")
        password = self.query_one("#password", Input).value
        if generate and password:
            raise FormError("password", "either generate a password or type one, not both")
        if not generate and not password:
            raise FormError("password", "type the repository password, or switch on generate")
        body: dict[str, Any] = {"url": url, "generate_password": generate}
        if password:
            body["password"] = password
        if self.text("rest_user"):
            body["rest_user"] = self.text("rest_user")
            rest_password = self.query_one("#rest_password", Input).value
            if rest_password:
                body["rest_password"] = rest_password
        return body


class ShownOnceDialog(ModalScreen[None]):
    """A generated secret, shown this once (the server keeps only what the agent needs)."""

    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape,enter", "close", "Close")]

    def __init__(self, title: str, lines: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.lines = lines

    def compose(self) -> ComposeResult:
        with Vertical(id="secret-box", classes="dialog"):
            yield Label(self.title_text, classes="form-title")
            for label, value in self.lines:
                yield Label(label)
                yield Static(Text(value), classes="secret-value")
            yield Label("Store it now: it is not shown again.", classes="form-hint")
            with Horizontal(classes="buttons"):
                yield Button("Close", variant="primary", id="close")
        yield Footer()

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)


class SettingsTabs:
    """Maintenance and Settings tabs of HostScreen."""

    maintenance: Maintenance | None
    bandwidth: dict[str, Any] | None
    repo: RepoInfo | None

    def render_maintenance(self) -> None:
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
        self.query_one("#maintenance-text", Static).update("\n".join(lines))

    def render_settings(self) -> None:
        bw = self.bandwidth or {}
        lines = ["[b]Bandwidth[/]", f"  upload {kbps(bw, 'upload_kbps')}  ·  download {kbps(bw, 'download_kbps')}", "",
                 "[b]Repository[/]"]
        repo = self.repo
        if repo is None:
            lines.append("  [yellow]no repository configured[/]: press p to set one (URL, generated password)")
        else:
            # The server redacts secrets from the URL; the password is never sent to the console.
            lines += [f"  url          {escape(repo.url)}", f"  key          {repo.key_fingerprint}",
                      f"  updated      {when(repo.updated_at)}",
                      f"  admin creds  {'yes (prune possible)' if repo.has_admin_credentials else 'no'}"]
            for key, value in (repo.stats or {}).items():
                if value is None or isinstance(value, (dict, list)):
                    continue
                if key in STAT_NAMES:
                    shown = size(value) if "size" in key else f"{value:,}" if isinstance(value, int) else value
                    lines.append(f"  {STAT_NAMES[key]:<12} {escape(str(shown))}")
        if not self.readonly:
            lines += ["", "[dim]e bandwidth · p repository · a admin credentials (prune) · ctrl+d delete this host[/]"]
        self.query_one("#settings-text", Static).update("\n".join(lines))

    def maintenance_form(self, values: dict[str, Any], error: str | None = None) -> None:
        self.push_form(MaintenanceForm(values, error), self.save_maintenance)

    def bandwidth_form(self, values: dict[str, Any], error: str | None = None) -> None:
        self.push_form(BandwidthForm(values, error), self.save_bandwidth)

    @work(group="host-save")
    async def save_maintenance(self, body: dict[str, Any]) -> None:
        try:
            self.maintenance = await self.client.set_maintenance(self.host.id, body)
        except ApiError as exc:
            if self.refused(exc, "Cannot save maintenance"):
                self.maintenance_form(body, exc.message)
            return
        self.render_maintenance()
        self.notify(f"maintenance saved: {maintenance_summary(self.maintenance)}")

    @work(group="host-save")
    async def save_bandwidth(self, body: dict[str, Any]) -> None:
        try:
            self.bandwidth = await self.client.set_bandwidth(self.host.id, body)
        except ApiError as exc:
            if self.refused(exc, "Cannot save bandwidth"):
                self.bandwidth_form(body, exc.message)
            return
        self.render_settings()
        bw = self.bandwidth or {}
        self.notify(f"bandwidth saved: upload {kbps(bw, 'upload_kbps')}, download {kbps(bw, 'download_kbps')}")

    def repo_form(self, admin: bool, values: dict[str, Any] | None = None, error: str | None = None) -> None:
        if values is None and self.repo is not None and not admin:
            values = {"generate_password": False}  # a second generated password would lock the agent out
        self.push_form(RepoForm(admin, values, error), lambda body: self.save_repo(admin, body))

    @work(group="host-save")
    async def save_repo(self, admin: bool, body: dict[str, Any]) -> None:
        path = f"/hosts/{self.host.id}/repo" + ("/admin-credentials" if admin else "")
        try:
            resp = await self.client.request("PUT", path, json=body)
        except ApiError as exc:
            if self.refused(exc, "Cannot save repository"):
                self.repo_form(admin, {**body, "password": ""}, exc.message)
            return
        what = "admin credentials" if admin else "repository"
        self.notify(f"{what} saved: {resp.get('url', body['url'])} (key {str(resp.get('key_fingerprint', ''))[:12]})")
        shown = [(label, resp[key]) for label, key in (("Repository password", "password"),
                                                       ("htpasswd line for the REST server", "htpasswd_line"))
                 if resp.get(key)]
        if shown:
            self.app.push_screen(ShownOnceDialog(f"{what.capitalize()} saved", shown))
        self.load_settings()

    def delete_host(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.do_delete_host()

        self.app.push_screen(ConfirmDialog(
            f"Delete host {self.host.hostname!r}? Its agent token is revoked and its jobs and settings are "
            "removed; the repository and its snapshots are not touched.", yes="Delete host"), answered)

    @work(group="host-save")
    async def do_delete_host(self) -> None:
        try:
            await self.client.request("DELETE", f"/hosts/{self.host.id}")
        except ApiError as exc:
            self.report(exc, "Cannot delete host")
            return
        self.notify(f"host {self.host.hostname} deleted")
        if self.app.screen is self:
            self.dismiss()
