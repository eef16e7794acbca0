"""What the console writes to a real terminal per keystroke (a thin SSH link pays each byte):
rm-tui in a pty of 200x50 against a real rm-server holding 500 hosts. No keystroke may cost
more than one full repaint, a filter keystroke at most 32 KB; filtering shows the first
match at the top. bench/tty_bytes.py is the same at 2,000 hosts, with the figures."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from fleet.driver import Server, rest_setup  # noqa: E402
from fleet.seed import prepare_db  # noqa: E402
from tty_bytes import console, keys, sign_in  # noqa: E402

HOSTS = 500


@pytest.fixture
def fleet_server(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    prepare_db(data_dir, HOSTS, jobs_per_host=1)
    server = Server(data_dir, max_agents=10)
    try:
        base = server.wait_ready()
        asyncio.run(rest_setup(base, data_dir))
        yield base
    finally:
        server.stop()


def test_no_keystroke_costs_more_than_a_full_repaint(fleet_server: str) -> None:
    tty = console(fleet_server)
    try:
        sign_in(tty, HOSTS)
        res = keys(tty)
    finally:
        tty.stop()
    full = res["full_repaint"]
    assert full > 10_000, res  # every line of 200x50 was drawn
    over = {k: v for k, v in res.items() if isinstance(v, list) and max(v) > full}
    over.update({f"filter {ch!r}": b for ch, b in res["filter"].items() if b > full})
    assert not over, f"keys that cost more than a full repaint ({full:,} B): {over}"
    assert res["filter_max_bytes"] <= 32_000, res["filter"]
    assert res["first_row_after_filter"] == "bench-00100", res
