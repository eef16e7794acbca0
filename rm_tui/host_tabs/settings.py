"""The settings tab: bandwidth (`e`), repository (`p`), admin credentials for prune (`a`),
initialising the repository (`i`), the copy repository (`c`), a key rotation (`k`) and deleting
the host (`ctrl+d`). Every setting a host needs, in the console. `i`, `p` and `a` work from every
tab (HostScreen hands them here): the server's errors name them ("press i on the host in the
console", rm_core.restic.ADVICE_*)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from rm_core.api import Host, RepoInfo, Snapshot
from rm_tui import messages as m
from rm_tui.client import ApiError
from rm_tui.format import short_id, size, when
from rm_tui.host_tabs.base import HostTab
from rm_tui.host_tabs.snapshots import CHANGES_REPO
from rm_tui.screens.forms import BandwidthForm
from rm_tui.screens.repo_form import RepoForm
from rm_tui.screens.shown_once import Secret, ShownOnceDialog

def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


# restic stats keys as the settings tab names them (others are not shown raw). Not
# total_file_count: the agent asks for raw-data stats, which count no files (restic 0.14 says 0);
# the files shown are the newest snapshot's, from the snapshots tab.
STAT_NAMES = {"total_size": "stored", "snapshots_count": "snapshots", "total_uncompressed_size": "uncompressed"}


def kbps(bw: dict[str, Any], key: str) -> str:
    return f"{bw[key]:,} KiB/s" if bw.get(key) else "unlimited"


class SettingsTab(HostTab, can_focus=True):
    MUTATING = frozenset({"edit", "repo", "admin_creds", "init_repo", "copy_repo", "rotate_key", "delete"})
    BINDINGS = [
        Binding("e", "edit", "Bandwidth"),
        # short words: these and esc/q/? fit 80 columns; the text below says them in full
        Binding("p", "repo", "Repo"),
        Binding("a", "admin_creds", "Admin"),
        Binding("i", "init_repo", "Init"),
        # out of the footer (80 columns): the tab's text names them
        Binding("c", "copy_repo", "Copy repository", show=False),
        Binding("k", "rotate_key", "Rotate key", show=False),
        Binding("ctrl+d", "delete", "Delete"),
    ]

    def __init__(self, host: Host, *, id: str | None = None) -> None:
        super().__init__(host, id=id)
        self.bandwidth: dict[str, Any] | None = None
        self.repo: RepoInfo | None = None
        self.copy_repo: RepoInfo | None = None
        self.rotation: dict[str, Any] | None = None
        self.newest: Snapshot | None = None  # the snapshots tab's newest, handed across by the screen

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="settings-text", classes="pane-text")

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="settings-load")
    async def load(self) -> None:
        try:
            self.bandwidth = await self.client.bandwidth(self.host.id)
            self.repo = await self.client.repo(self.host.id)
            self.copy_repo = await self._optional(f"/hosts/{self.host.id}/repo/copy", RepoInfo)
            self.rotation = await self._optional(f"/hosts/{self.host.id}/repo/rotate-key", None)
        except ApiError as exc:
            self.report(exc, "Cannot load host settings")
            return
        if not self.is_mounted:
            return  # the screen closed while this loaded
        self.loaded = True
        self.render_text()
        self.post_message(m.RepoChanged(self.repo))

    async def _optional(self, path: str, model: Any) -> Any:
        """A resource that may not exist (404: None)."""
        try:
            body = await self.client.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return model.model_validate(body) if model is not None else body

    def apply(self, event: m.ServerEvent) -> None:
        super().apply(event)
        if isinstance(event, m.JobUpdated) and event.job.state.terminal and event.job.kind in CHANGES_REPO:
            self.load()  # the repository's stats changed

    def set_newest(self, newest: Snapshot | None) -> None:
        self.newest = newest
        if self.loaded:
            self.render_text()

    def render_text(self) -> None:
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
            newest = self.newest
            files = (newest.summary or {}).get("total_files_processed") if newest else None
            if newest is not None and isinstance(files, int):
                lines.append(f"  {'files':<12} {files:,} in the newest snapshot "
                             f"({newest.short_id or newest.id[:8]}, {when(newest.time)})")
        lines += ["", "[b]Copy repository[/]"]
        if self.copy_repo is None:
            lines.append("  none: press c to set one (a second copy of the groups whose copy is on)")
        else:
            cstats = self.copy_repo.stats or {}
            lines += [f"  url          {escape(self.copy_repo.url)}", f"  key          {self.copy_repo.key_fingerprint}",
                      f"  stored       {size(cstats.get('total_size'))}  ·  "
                      f"{cstats.get('snapshots_count') if cstats.get('snapshots_count') is not None else '?'} snapshots"]
        if self.rotation is not None:
            r = self.rotation
            lines += ["", "[b]Key rotation[/]",
                      f"  {r.get('repo')}: {r.get('state')}  ·  started {when(_dt(r.get('created_at')))}"
                      + (f"  ·  [red]{escape(str(r['error']))}[/]" if r.get("error") else "")]
        if not self.readonly:
            lines += ["", "[dim]e bandwidth · p repository · a admin credentials (prune) · i initialise the repository "
                          "(on an existing one: checks the password opens it) · c copy repository · "
                          "k rotate the repository key · ctrl+d delete this host[/]"]
        if (text := self.part("#settings-text", Static)) is not None:
            text.update("\n".join(lines))

    # ------------------------------------------------------------ bandwidth

    def action_edit(self, values: dict[str, Any] | None = None, error: str | None = None) -> None:
        self.push_form(BandwidthForm(values if values is not None else self.bandwidth or {}, error),
                       self.save_bandwidth)

    @work(group="host-save")
    async def save_bandwidth(self, body: dict[str, Any]) -> None:
        try:
            self.bandwidth = await self.client.set_bandwidth(self.host.id, body)
        except ApiError as exc:
            if self.refused(exc, "Cannot save bandwidth"):
                self.action_edit(body, exc.message)
            return
        self.render_text()
        bw = self.bandwidth or {}
        self.notify(f"bandwidth saved: upload {kbps(bw, 'upload_kbps')}, download {kbps(bw, 'download_kbps')}")

    # ------------------------------------------------------------ repository

    def action_repo(self) -> None:
        self.repo_form(admin=False)

    def action_admin_creds(self) -> None:
        self.repo_form(admin=True)

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
        shown = [Secret(label, resp[key], name) for label, key, name in (
            ("Repository password", "password", "password"),
            ("htpasswd line for the REST server", "htpasswd_line", "htpasswd line")) if resp.get(key)]
        if shown:
            self.app.push_screen(ShownOnceDialog(f"{what.capitalize()} saved", shown))
        self.load()

    # ------------------------------------------------------------ copy repository, key rotation

    def action_copy_repo(self, values: dict[str, Any] | None = None, error: str | None = None) -> None:
        if values is None and self.copy_repo is not None:
            values = {"generate_password": False}
        self.push_form(RepoForm(False, values, error, title="Copy repository"), self.save_copy_repo)

    @work(group="host-save")
    async def save_copy_repo(self, body: dict[str, Any]) -> None:
        try:
            resp = await self.client.request("PUT", f"/hosts/{self.host.id}/repo/copy", json=body)
        except ApiError as exc:
            if self.refused(exc, "Cannot save the copy repository"):
                self.action_copy_repo({**body, "password": ""}, exc.message)
            return
        self.notify(f"copy repository saved: {resp.get('url', body['url'])}")
        if resp.get("password"):
            self.app.push_screen(ShownOnceDialog("Copy repository saved",
                                                 [Secret("Copy repository password", resp["password"], "password")]))
        self.load()

    def action_rotate_key(self) -> None:
        if self.repo is None:
            self.notify("This host has no repository key to rotate", severity="warning")
            return
        self.ask(f"Rotate the repository key of {self.host.hostname}? The agent adds a new key, the server keeps "
                 "its password, then the old key is removed. Back up the server's data afterwards.",
                 self.rotate_key, yes="Rotate")

    @work(group="host-save")
    async def rotate_key(self) -> None:
        try:
            body = await self.client.request("POST", f"/hosts/{self.host.id}/repo/rotate-key", json={})
        except ApiError as exc:
            self.report(exc, "Cannot rotate the key")
            return
        self.notify(f"key rotation started ({body.get('state')})")
        self.load()

    # ------------------------------------------------------------ init

    def action_init_repo(self) -> None:
        """Init the repository as configured: what recovers a typo'd URL or a wiped repository.
        Asks first; on an existing repository restic's init changes nothing (the agent then
        only checks that the password opens it)."""
        if self.repo is None:
            self.notify(f"{self.host.hostname} has no repository configured yet: press p to set one",
                        severity="warning")
            return
        self.ask(f"Initialise the repository of {self.host.hostname!r} at {self.repo.url}? An existing repository "
                 "is left as it is (init then only checks that the password opens it).", self.run_init,
                 yes="Init")

    @work(group="host-save")
    async def run_init(self) -> None:
        try:
            job = await self.client.create_job(self.host.id, {"kind": "init"})
        except ApiError as exc:
            self.report(exc, "Cannot start init")
            return
        self.notify(f"init {job.state.value} (job {short_id(job.id)})")
        self.post_message(m.JobsStarted([job]))  # the screen lists it and opens its live log

    # ------------------------------------------------------------ delete the host

    def action_delete(self) -> None:
        self.ask(f"Delete host {self.host.hostname!r}? Its agent token is revoked and its jobs and settings are "
                 "removed; the repository and its snapshots are not touched.", self.delete_host, yes="Delete host")

    @work(group="host-save")
    async def delete_host(self) -> None:
        try:
            await self.client.request("DELETE", f"/hosts/{self.host.id}")
        except ApiError as exc:
            self.report(exc, "Cannot delete host")
            return
        self.notify(f"host {self.host.hostname} deleted")
        self.post_message(m.HostRemoved())
