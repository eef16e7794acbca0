"""rm_core and rm_agent stay importable on Python 3.9; the server and console say they need 3.11."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rm_core.pyversion import AGENT_MINIMUM, SERVER_MINIMUM, require_python

ROOT = Path(__file__).resolve().parents[2]
FLOOR = ".".join(map(str, AGENT_MINIMUM))


def vermin(*paths: str | Path) -> subprocess.CompletedProcess:
    # the console script beside this interpreter: vermin has no `python -m vermin`
    return subprocess.run([str(Path(sys.executable).parent / "vermin"), f"-t={FLOOR}-", "--no-tips", "--violations",
                           "--no-parse-comments", *map(str, paths)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_rm_core_and_rm_agent_use_nothing_newer_than_python_3_9() -> None:
    out = vermin("rm_core", "rm_agent")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("probe", [
    "from enum import StrEnum\n",
    "def f(x):\n    match x:\n        case 1:\n            return 1\n",
    "import asyncio\nasync def f():\n    async with asyncio.timeout(1):\n        pass\n",
    "from datetime import UTC\n",
])
def test_the_vermin_guard_fails_on_a_newer_feature(tmp_path: Path, probe: str) -> None:
    (tmp_path / "probe.py").write_text(probe)
    out = vermin(tmp_path / "probe.py")
    assert out.returncode == 1 and "Target versions not met:   3.9-" in out.stdout, out.stdout + out.stderr


def test_server_and_console_refuse_an_older_python_with_a_sentence() -> None:
    with pytest.raises(SystemExit, match=r"rm-server needs Python 3\.11 or newer; this is Python 3\.9\.18"):
        require_python("rm-server", SERVER_MINIMUM, (3, 9, 18))
    require_python("rm-server", SERVER_MINIMUM, (3, 11, 0))
    require_python("rm-agent", AGENT_MINIMUM, (3, 9, 0))
