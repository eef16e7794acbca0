"""Modal forms that return a request body (or None when cancelled).

A form only builds and checks the body; the screen that opened it sends it and, when the
server refuses, opens the form again with the same values and the server's message."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Checkbox, Input, Label, Select, Static, TextArea

from rm_core.cron import CronError, next_fires
from rm_tui.screens.form_base import FormError, FormScreen, field_label, num
from rm_tui.screens.retention_preview import RetentionPreviewScreen
from rm_tui.widgets.check import Check, CheckList

RETENTION_KEYS = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")


class SourceGroupForm(FormScreen):
    """Name, paths to back up and skip (one per line), tag and the common keep-* rules. Editing
    a group, ctrl+f previews what forget would remove with the rules as typed (nothing saved)."""

    BINDINGS = [Binding("ctrl+f", "preview", "Preview retention")]

    def __init__(self, values: dict[str, Any] | None = None, error: str | None = None, editing: bool = False,
                 preview: tuple[str, str, str] | None = None) -> None:
        super().__init__(values, error)
        self.editing = editing
        self.title_text = f"Edit source group {self.values.get('name', '')}" if editing else "New source group"
        self.preview = preview  # (host id, hostname, group id): a saved group has snapshots to preview

    def fields(self) -> ComposeResult:
        v = self.values
        retention = v.get("retention") or {}
        yield field_label("Name")
        yield Input(v.get("name", ""), placeholder="etc", id="name")
        yield field_label("Paths to back up, one per line")
        yield TextArea("\n".join(v.get("includes") or []), id="includes")
        yield field_label("Paths or patterns to skip, one per line")
        yield TextArea("\n".join(v.get("excludes") or []), id="excludes")
        yield field_label("Tag (empty: derived from the name)")
        yield Input(v.get("tag") or "", id="tag")
        yield field_label("Retention (empty: not used)")
        with Horizontal(classes="row"):
            for key in RETENTION_KEYS:
                with Vertical():
                    yield Label(key.replace("_", " "))
                    yield Input(num(retention.get(key)), id=key, type="integer")
        if self.preview:
            yield Label("ctrl+f: which snapshots forget would keep and remove with these values, before saving",
                        classes="form-hint")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.preview is not None if action == "preview" else True

    def retention(self) -> dict[str, Any]:
        """The keep rules as typed; those the form does not show (hourly, yearly, within) as they were."""
        retention = dict(self.values.get("retention") or {})
        for key in RETENTION_KEYS:
            retention[key] = self.number(key, key.replace("_", " "))
        return retention

    def action_preview(self) -> None:
        try:
            retention = self.retention()
        except FormError as exc:
            self.refuse(exc)
            return
        self.show_error("")
        host_id, hostname, group_id = self.preview or ("", "", "")
        name = self.text("name") or self.values.get("name", "")
        self.app.push_screen(RetentionPreviewScreen(host_id, hostname, group_id, name, retention))

    def collect(self) -> dict[str, Any]:
        name = self.text("name")
        if not name:
            raise FormError("name", "a source group needs a name")
        includes = self.lines("includes")
        if not includes:
            raise FormError("includes", "give at least one path to back up")
        return {**self.values, "name": name, "includes": includes, "excludes": self.lines("excludes"),
                "tag": self.text("tag") or None, "retention": self.retention()}


def cron_preview(cron: str, tz: str, now: datetime | None = None) -> list[datetime]:
    """The next five fire times; CronError carries the reason when there are none."""
    return next_fires(cron, tz or "UTC", now or datetime.now(timezone.utc), 5)


class ScheduleForm(FormScreen):
    """Cron with a live preview of the next five fire times, timezone, switches, groups."""

    def __init__(self, groups: list[tuple[str, str]], values: dict[str, Any] | None = None,
                 error: str | None = None, editing: bool = False) -> None:
        super().__init__(values, error)
        self.groups = groups  # (name, id) of the host's source groups
        self.editing = editing
        self.title_text = f"Edit schedule {self.values.get('name', '')}" if editing else "New schedule"
        self.cron_ok = False

    def fields(self) -> ComposeResult:
        v = self.values
        chosen = set(v.get("source_group_ids") or [])
        if not chosen and len(self.groups) == 1:
            chosen = {self.groups[0][1]}
        yield field_label("Name")
        yield Input(v.get("name", ""), placeholder="nightly", id="name")
        with Horizontal(classes="row"):
            with Vertical():
                yield field_label("Cron (min hour day month weekday)")
                yield Input(v.get("cron") or ("" if v.get("manual") else "0 2 * * *"), id="cron")
            with Vertical():
                yield field_label("Timezone")
                yield Input(v.get("timezone") or "UTC", placeholder="Europe/Berlin", id="timezone")
        yield Static("", id="cron-preview")
        with Horizontal(classes="switch-row"):
            yield Check("manual (run-now only)", bool(v.get("manual", False)), id="manual")
            yield Check("enabled", bool(v.get("enabled", True)), id="enabled")
        yield field_label("Source groups (space toggles)")
        yield CheckList(*((name, gid, gid in chosen) for name, gid in self.groups), id="groups")

    def on_mount(self) -> None:
        self.update_preview()

    @on(Input.Changed, "#cron")
    @on(Input.Changed, "#timezone")
    @on(Checkbox.Changed, "#manual")
    def update_preview(self) -> None:
        preview = self.query_one("#cron-preview", Static)
        manual = self.switch("manual")
        self.query_one("#cron", Input).disabled = manual
        if manual:
            preview.remove_class("error")
            preview.update("manual: fires only through run now")
            self.cron_ok = True
            return
        try:
            fires = cron_preview(self.text("cron"), self.text("timezone"))
        except CronError as exc:
            preview.add_class("error")
            preview.update(str(exc))
            self.cron_ok = False
            return
        preview.remove_class("error")
        preview.update("next: " + "  ·  ".join(f.strftime("%a %Y-%m-%d %H:%M") for f in fires)
                       + f"  ({self.text('timezone') or 'UTC'})")
        self.cron_ok = True

    @property
    def preview_text(self) -> str:
        return str(self.query_one("#cron-preview", Static).render())

    def collect(self) -> dict[str, Any]:
        name = self.text("name")
        if not name:
            raise FormError("name", "a schedule needs a name")
        manual = self.switch("manual")
        tz = self.text("timezone") or "UTC"
        cron = None
        if not manual:
            cron = self.text("cron")
            try:
                cron_preview(cron, tz)
            except CronError as exc:
                raise FormError("cron", str(exc)) from None
        groups = list(self.query_one("#groups", CheckList).selected)
        if not groups:
            raise FormError("groups", "choose at least one source group (space toggles)")
        return {"name": name, "cron": cron, "timezone": tz, "enabled": self.switch("enabled"), "manual": manual,
                "source_group_ids": groups}


class MaintenanceForm(FormScreen):
    """forget / prune / check: each a cron and an on switch; check may read a data subset."""

    title_text = "Maintenance"
    TASKS = ("forget", "prune", "check")

    def fields(self) -> ComposeResult:
        for task in self.TASKS:
            v = self.values.get(task) or {}
            yield field_label(task + (" (needs admin credentials on the repository)" if task == "prune" else ""))
            with Horizontal(classes="switch-row"):
                yield Check("on", bool(v.get("enabled")), id=f"{task}-enabled")
                yield Input(v.get("cron") or "", placeholder="0 4 * * 0", id=f"{task}-cron")
            if task == "check":
                yield field_label("check: read data subset (e.g. 5% or 1/10; empty: none)")
                yield Input(v.get("read_data_subset") or "", id="check-subset")

    def collect(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for task in self.TASKS:
            cron = self.text(f"{task}-cron") or None
            enabled = self.switch(f"{task}-enabled")
            if enabled and not cron:
                raise FormError(f"{task}-cron", f"{task} is on: give it a cron")
            if cron:
                try:
                    cron_preview(cron, "UTC")
                except CronError as exc:
                    raise FormError(f"{task}-cron", f"{task}: {exc}") from None
            body[task] = {"cron": cron, "enabled": enabled}
        body["check"]["read_data_subset"] = self.text("check-subset") or None
        return body


class BandwidthForm(FormScreen):
    title_text = "Bandwidth limits (KiB/s; empty: unlimited)"

    def fields(self) -> ComposeResult:
        yield field_label("Upload KiB/s")
        yield Input(num(self.values.get("upload_kbps")), id="upload_kbps", type="integer")
        yield field_label("Download KiB/s")
        yield Input(num(self.values.get("download_kbps")), id="download_kbps", type="integer")

    def collect(self) -> dict[str, Any]:
        body = {"upload_kbps": self.number("upload_kbps", "upload", 1),
                "download_kbps": self.number("download_kbps", "download", 1)}
        return {k: v for k, v in body.items() if v is not None}


class EnrollmentForm(FormScreen):
    title_text = "New enrollment token"

    def fields(self) -> ComposeResult:
        v = self.values
        yield field_label("Name (what it is for)")
        yield Input(v.get("name") or "", placeholder="web servers", id="name")
        with Horizontal(classes="row"):
            with Vertical():
                yield Label("Valid for (minutes)")
                yield Input(str((v.get("ttl_seconds") or 3600) // 60), id="ttl", type="integer")
            with Vertical():
                yield Label("Uses")
                yield Input(str(v.get("max_uses") or 1), id="max_uses", type="integer")
        yield field_label("Initial paths to back up, one per line (optional)")
        yield TextArea("\n".join(v.get("initial_paths") or []), id="initial_paths")

    def collect(self) -> dict[str, Any]:
        ttl = self.number("ttl", "valid for", 1) or 60
        uses = self.number("max_uses", "uses", 1) or 1
        return {"name": self.text("name") or None, "ttl_seconds": ttl * 60, "max_uses": uses,
                "initial_paths": self.lines("initial_paths")}


ROLES = ("viewer", "operator", "admin")


class OperatorForm(FormScreen):
    """New operator (name, password, role) or a change (role, disabled, new password)."""

    def __init__(self, values: dict[str, Any] | None = None, error: str | None = None, editing: bool = False) -> None:
        super().__init__(values, error)
        self.editing = editing
        self.title_text = f"Operator {self.values.get('username', '')}" if editing else "New operator"

    def fields(self) -> ComposeResult:
        v = self.values
        if not self.editing:
            yield field_label("Username")
            yield Input(v.get("username") or "", id="username")
        yield field_label("New password (empty: unchanged)" if self.editing else "Password (8 characters or more)")
        yield Input("", password=True, id="password")
        yield field_label("Role")
        yield Select([(r, r) for r in ROLES], value=v.get("role") or "viewer", allow_blank=False, id="role")
        if self.editing:
            yield Check("disabled (cannot sign in)", bool(v.get("disabled")), id="disabled")

    def collect(self) -> dict[str, Any]:
        password = self.query_one("#password", Input).value
        role = self.query_one("#role", Select).value
        if self.editing:
            body: dict[str, Any] = {"role": role, "disabled": self.switch("disabled")}
            if password:
                body["password"] = password
            return body
        username = self.text("username")
        if not username:
            raise FormError("username", "an operator needs a username")
        if len(password) < 8:
            raise FormError("password", "the password needs at least 8 characters")
        return {"username": username, "password": password, "role": role}
