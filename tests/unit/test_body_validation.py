"""Cron and timezone rules live in the rm_core body models: the server and the console
get the same answer for the same input."""

import pytest
from pydantic import ValidationError

from rm_core.api import Maintenance, ScheduleBody
from rm_core.fleet import FleetPolicyBody


def field_of(exc: ValidationError) -> str:
    return ".".join(str(p) for p in exc.errors()[0]["loc"])


@pytest.mark.parametrize("tz", ["Mars/Olympus", "America", "Etc", "zone1970.tab", "../etc", "/etc/passwd", ""])
def test_schedule_timezone_must_be_a_zone(tz):
    with pytest.raises(ValidationError) as caught:
        ScheduleBody(name="n", cron="0 3 * * *", timezone=tz, source_group_ids=["g"])
    assert field_of(caught.value) == "timezone"


@pytest.mark.parametrize("cron", ["61 * * * *", "* * *", "0 3 * * * *", "every day", "0 3 31 2 *"])
def test_schedule_cron_must_fire(cron):
    with pytest.raises(ValidationError) as caught:
        ScheduleBody(name="n", cron=cron, source_group_ids=["g"])
    assert field_of(caught.value) == "cron"


def test_manual_schedule_has_no_cron_and_others_need_one():
    assert ScheduleBody(name="n", manual=True, source_group_ids=["g"]).cron is None
    for kw in ({"manual": True, "cron": "0 3 * * *"}, {}):
        with pytest.raises(ValidationError) as caught:
            ScheduleBody(name="n", source_group_ids=["g"], **kw)
        assert field_of(caught.value) == "cron"


def test_fleet_policy_checks_cron_and_timezone():
    ok = {"includes": ["/etc"], "cron": "0 3 * * *", "timezone": "Europe/Berlin"}
    assert FleetPolicyBody(**ok).timezone == "Europe/Berlin"
    for bad, field in (({"cron": "61 * * * *"}, "cron"), ({"timezone": "America"}, "timezone")):
        with pytest.raises(ValidationError) as caught:
            FleetPolicyBody(**{**ok, **bad})
        assert field_of(caught.value) == field


def test_maintenance_cron_checked_and_required_when_enabled():
    assert Maintenance(forget={"cron": "0 4 * * 0", "enabled": True}).forget.enabled
    with pytest.raises(ValidationError) as caught:
        Maintenance(prune={"enabled": True})
    assert field_of(caught.value) == "prune.cron"
    with pytest.raises(ValidationError) as caught:
        Maintenance(check={"cron": "99 * * * *"})
    assert field_of(caught.value) == "check.cron"
