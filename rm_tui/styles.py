"""Colours every screen uses for the same states, in one place (no screen imports another for them)."""

from __future__ import annotations

from rm_core.enums import HostStatus, JobState

STATUS_STYLE = {HostStatus.online: "green", HostStatus.offline: "red", HostStatus.pending: "yellow"}
STATE_STYLE = {JobState.succeeded: "green", JobState.warning: "yellow", JobState.failed: "bold red",
               JobState.lost: "red", JobState.cancelled: "dim", JobState.running: "cyan"}
# the fleet's "last verified": a good drill is not news, a failed one is
VERIFIED_STYLE = {JobState.succeeded: "", JobState.warning: "yellow", JobState.failed: "bold red"}
