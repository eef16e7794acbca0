"""The host screen's Source groups and Schedules tabs: run now, new, edit, delete.

A mixin of HostScreen (it uses the screen's client, host, dicts and render helpers),
split out so that each module holds one concern; the Settings tabs are host_settings."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from textual import work

from rm_core.api import Maintenance, Schedule, SourceGroup
from rm_core.cron import CronError, next_fires
from rm_tui.client import ApiError
from rm_tui.screens.confirm import ConfirmDialog
from rm_tui.screens.forms import ScheduleForm, SourceGroupForm
from rm_tui.format import plural, short_id
from rm_tui.widgets.table import ResourceTable

GROUP_BODY_KEYS = ("name", "includes", "excludes", "tag", "retention", "pre_hook", "post_hook")


def next_run(s: Schedule, now: datetime | None = None) -> datetime | None:
    """The next fire computed now, by the clock: the server's next_run goes stale as time passes."""
    if s.manual or not s.enabled or not s.cron:
        return None
    try:
        return next_fires(s.cron, s.timezone, now or datetime.now(timezone.utc), 1)[0]
    except CronError:
        return s.next_run


def conflict_text(exc: ApiError) -> str:
    """The server's message, plus the names of the schedules a 409 says are in the way."""
    users = exc.details.get("schedules") if isinstance(exc.details, dict) else None
    if exc.status == 409 and isinstance(users, list) and users:
        names = ", ".join(str(u.get("name", u.get("id"))) for u in users if isinstance(u, dict))
        return f"{exc.message} (used by: {names})"
    return exc.message


class GroupsSchedulesTabs:
    """Source groups and Schedules tabs of HostScreen: run now and editing."""

    groups: dict[str, SourceGroup]
    schedules: dict[str, Schedule]

    # ------------------------------------------------------------ run now and logs

    def action_run_now(self) -> None:
        if self.readonly:
            self.notify("read-only console: run now is disabled", severity="warning")
            return
        if self.tab == "schedules":
            sid = self.selected("schedules")
            if sid:
                self.run_schedule(sid)
            else:
                self.notify("This host has no schedule to run", severity="warning")
            return
        gid = self.selected("groups")
        if gid:
            self.run_group(gid)
        else:
            self.notify("This host has no source group to back up", severity="warning")

    @work(exclusive=True, group="run-now")
    async def run_group(self, group_id: str) -> None:
        name = self.groups[group_id].name if group_id in self.groups else group_id
        try:
            job = await self.client.run_source_group(self.host.id, group_id)
        except ApiError as exc:
            self.report(exc, f"Cannot back up {name}")
            return
        self.jobs[job.id] = job
        self.render_jobs()
        self.notify(f"backup of {name} {job.state.value} (job {short_id(job.id)})")

    @work(exclusive=True, group="run-now")
    async def run_schedule(self, schedule_id: str) -> None:
        name = self.schedules[schedule_id].name if schedule_id in self.schedules else schedule_id
        try:
            jobs = await self.client.run_schedule(self.host.id, schedule_id)
        except ApiError as exc:
            self.report(exc, f"Cannot run {name}")
            return
        for job in jobs:
            self.jobs[job.id] = job
        self.render_jobs()
        self.notify(f"schedule {name}: {plural(len(jobs), 'job')} started")

    # ------------------------------------------------------------ new / edit / delete

    def group_choices(self) -> list[tuple[str, str]]:
        return [(g.name, g.id) for g in sorted(self.groups.values(), key=lambda g: g.name.lower())]

    def action_new(self) -> None:
        if self.tab == "groups":
            self.group_form({"includes": list(self.host.initial_paths)}, None)
        elif self.tab == "schedules":
            if not self.groups:
                self.notify("Create a source group first: a schedule backs up source groups", severity="warning")
                return
            self.schedule_form({}, None)

    def action_edit(self) -> None:
        tab = self.tab
        if tab == "groups":
            gid = self.selected("groups")
            if gid is None:
                self.notify("No source group selected", severity="warning")
                return
            g = self.groups[gid]
            body = g.model_dump(mode="json", include=set(GROUP_BODY_KEYS))
            body["retention"] = {k: v for k, v in body["retention"].items() if v is not None}
            self.group_form(body, gid)
        elif tab == "schedules":
            sid = self.selected("schedules")
            if sid is None:
                self.notify("No schedule selected", severity="warning")
                return
            s = self.schedules[sid]
            self.schedule_form(s.model_dump(mode="json", include={"name", "cron", "timezone", "enabled", "manual",
                                                                  "source_group_ids"}), sid)
        elif tab == "maintenance":
            self.maintenance_form((self.maintenance or Maintenance()).model_dump(mode="json"))
        elif tab == "settings":
            self.bandwidth_form(self.bandwidth or {})

    def group_form(self, values: dict[str, Any], gid: str | None, error: str | None = None) -> None:
        preview = (self.host.id, self.host.hostname, gid) if gid else None
        self.push_form(SourceGroupForm(values, error, editing=gid is not None, preview=preview),
                       lambda body: self.save_group(body, gid))

    def schedule_form(self, values: dict[str, Any], sid: str | None, error: str | None = None) -> None:
        self.push_form(ScheduleForm(self.group_choices(), values, error, editing=sid is not None),
                       lambda body: self.save_schedule(body, sid))

    def refused(self, exc: ApiError, title: str) -> bool:
        """Toast the server's message; True when the values were refused (form worth reopening)."""
        self.report(exc, title)
        return exc.status in (400, 409, 422)

    @work(group="host-save")
    async def save_group(self, body: dict[str, Any], gid: str | None) -> None:
        try:
            group = await self.client.save_source_group(self.host.id, body, gid)
        except ApiError as exc:
            if self.refused(exc, "Cannot save source group"):
                self.group_form(body, gid, exc.message)
            return
        self.groups[group.id] = group
        self.render_groups()
        self.query_one("#groups-table", ResourceTable).move_to(group.id)  # on the group just saved
        self.notify(f"source group {group.name} saved")

    @work(group="host-save")
    async def save_schedule(self, body: dict[str, Any], sid: str | None) -> None:
        try:
            schedule = await self.client.save_schedule(self.host.id, body, sid)
        except ApiError as exc:
            if self.refused(exc, "Cannot save schedule"):
                self.schedule_form(body, sid, exc.message)
            return
        self.schedules[schedule.id] = schedule
        self.render_schedules()
        self.query_one("#schedules-table", ResourceTable).move_to(schedule.id)
        self.notify(f"schedule {schedule.name} saved")

    def action_repo(self) -> None:
        self.repo_form(admin=False)

    def action_admin_creds(self) -> None:
        self.repo_form(admin=True)

    def action_delete(self) -> None:
        tab = self.tab
        if tab == "settings":
            self.delete_host()
            return
        key = self.selected(tab) if tab in ("groups", "schedules") else None
        if key is None:
            self.notify("Nothing selected to delete", severity="warning")
            return
        if tab == "groups":
            question = f"Delete source group {self.groups[key].name!r}? Its snapshots stay in the repository."
        else:
            question = f"Delete schedule {self.schedules[key].name!r}?"

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete(tab, key)

        self.app.push_screen(ConfirmDialog(question), answered)

    @work(group="host-save")
    async def delete(self, tab: str, key: str) -> None:
        try:
            if tab == "groups":
                await self.client.delete_source_group(self.host.id, key)
                name = self.groups.pop(key).name
                self.render_groups()
            else:
                await self.client.delete_schedule(self.host.id, key)
                name = self.schedules.pop(key).name
                self.render_schedules()
        except ApiError as exc:
            if exc.status == 401:
                self.report(exc, "Cannot delete")
            else:
                self.notify(conflict_text(exc), title="Cannot delete", severity="error", timeout=10)
            return
        self.notify(f"{name} deleted")
