"""Which Python each program needs: rm_core and rm_agent run on 3.9+, the server and console on 3.11+.

The distribution declares the lowest (3.9) so the agent installs on older hosts; the server
and console packages call `require_python` first thing, so on an older interpreter they stop
with a sentence saying what to do instead of a traceback from deep inside.
"""

from __future__ import annotations

import sys

AGENT_MINIMUM = (3, 9)
SERVER_MINIMUM = (3, 11)


def require_python(program: str, minimum: tuple[int, int], version: tuple[int, ...] = sys.version_info[:3]) -> None:
    """Exit with a clear message when this interpreter is older than `minimum`."""
    if tuple(version[:2]) < minimum:
        need = ".".join(map(str, minimum))
        have = ".".join(map(str, version[:3]))
        raise SystemExit(f"{program} needs Python {need} or newer; this is Python {have} ({sys.executable}). "
                         f"Run it with a newer python3 (only rm-agent runs on Python 3.9 and 3.10).")
