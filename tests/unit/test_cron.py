"""rm_core.cron: the one cron module; the fire instant itself counts as a fire."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from rm_core.cron import CronError, next_fire, next_fires, previous_fire, validate

UTC = timezone.utc


def test_previous_fire_at_the_exact_fire_instant_is_that_fire() -> None:
    exact = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
    assert previous_fire("0 2 * * *", "UTC", exact) == exact
    assert previous_fire("0 2 * * *", "UTC", exact - timedelta(microseconds=1)) == exact - timedelta(days=1)
    assert previous_fire("0 2 * * *", "UTC", exact + timedelta(seconds=59)) == exact


def test_previous_fire_at_the_fire_instant_in_another_zone() -> None:
    exact = datetime(2024, 6, 1, 0, 0, tzinfo=UTC)  # 02:00 in Berlin (CEST, UTC+2)
    assert previous_fire("0 2 * * *", "Europe/Berlin", exact) == exact
    assert previous_fire("0 2 * * *", "Europe/Berlin", exact + timedelta(minutes=30)) == exact


def test_next_fire_is_strictly_after() -> None:
    exact = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
    assert next_fire("0 2 * * *", "UTC", exact) == exact + timedelta(days=1)
    assert next_fires("0 2 * * *", "UTC", exact, 2) == [exact + timedelta(days=1), exact + timedelta(days=2)]


def test_bad_expressions_and_zones_name_the_problem() -> None:
    with pytest.raises(CronError, match="expected 5 fields"):
        validate("0 2 * *")
    with pytest.raises(CronError, match="unknown timezone 'Mars/Base'"):
        previous_fire("0 2 * * *", "Mars/Base", datetime(2024, 6, 1, tzinfo=UTC))
