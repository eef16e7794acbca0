"""When a drill is due and when a source group's drills are overdue (pure rules)."""

from datetime import datetime, timedelta, timezone

import pytest

from rm_core.drills import DrillPolicy
from rm_server.services.drills import due, overdue
from rm_server.store.drills import DrillRow

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def row(policy: DrillPolicy, *, updated=T0 - timedelta(days=2), last_fire=None, last_success=None) -> DrillRow:
    return DrillRow("h1", "g1", policy, updated, last_fire, False, last_success)


@pytest.mark.parametrize("policy, last_fire, now, expected", [
    (DrillPolicy(cron="0 3 * * *"), None, T0, True),  # fired at 03:00 today, after the save two days ago
    (DrillPolicy(cron="0 3 * * *"), T0.replace(hour=3, minute=1), T0, False),  # already ran for that fire
    (DrillPolicy(cron="0 3 * * *"), T0.replace(hour=3, minute=1), T0 + timedelta(days=1), True),
    (DrillPolicy(cron="0 3 * * *", enabled=False), None, T0, False),
    (DrillPolicy(cron=None), None, T0, False),  # no cadence: run by hand only
    (DrillPolicy.model_construct(cron="not a cron", enabled=True, timezone="UTC"), None, T0, False),  # stored before a rule
])
def test_due(policy, last_fire, now, expected):
    assert due(now, row(policy, last_fire=last_fire)) is expected


def test_a_new_policy_waits_for_its_next_fire():
    r = row(DrillPolicy(cron="0 3 * * *"), updated=T0, last_fire=T0)
    assert not due(T0 + timedelta(hours=1), r)
    assert due(T0.replace(hour=3) + timedelta(days=1, minutes=1), r)


@pytest.mark.parametrize("policy, last_success, expected", [
    (DrillPolicy(max_age_hours=24), T0 - timedelta(hours=23), False),
    (DrillPolicy(max_age_hours=24), T0 - timedelta(hours=25), True),
    (DrillPolicy(max_age_hours=24), None, True),  # never succeeded, policy saved two days ago
    (DrillPolicy(max_age_hours=None), None, False),
    (DrillPolicy(max_age_hours=24, enabled=False), None, False),
])
def test_overdue(policy, last_success, expected):
    assert overdue(T0, row(policy, last_success=last_success)) is expected
