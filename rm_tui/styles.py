"""Colours every screen uses for the same states, in one place (no screen imports another for them)."""

from __future__ import annotations

from rich.text import Text

from rm_core.enums import HostStatus, JobState
from rm_core.jobs import Job

STATUS_STYLE = {HostStatus.online: "green", HostStatus.offline: "red", HostStatus.pending: "yellow"}
STATE_STYLE = {JobState.succeeded: "green", JobState.warning: "yellow", JobState.failed: "bold red",
               JobState.lost: "red", JobState.cancelled: "dim", JobState.running: "cyan"}
# the fleet's "last verified": a good drill is not news, a failed one is
VERIFIED_STYLE = {JobState.succeeded: "", JobState.warning: "yellow", JobState.failed: "bold red"}


def job_state(job: Job, default: str = "") -> Text:
    """A job's state as every list shows it: `cancelling` once an operator cancelled a job that
    still runs (restic ends its uploads in flight first), so it never looks merely running."""
    if job.cancel_requested and not job.state.terminal:
        return Text("cancelling", style="yellow")
    return Text(job.state.value, style=STATE_STYLE.get(job.state, default))
