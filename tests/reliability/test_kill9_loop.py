"""20 kill -9 of the server during concurrent jobs with logs in flight: every job ends
with its whole log and one terminal state, and the database is intact.
(bench/kill9_loop.py runs the same loop longer.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.kill9 import run_loop

pytestmark = pytest.mark.e2e


async def test_twenty_server_kills_lose_and_double_nothing(tmp_path: Path) -> None:
    figures = await run_loop(tmp_path, cycles=20, hosts=4, lines_per_job=120, lines_per_cycle=150)
    print(figures)
    assert figures["jobs"] >= 4 * 2 and figures["reconnects"] >= 4 * 20
