"""A password manager types "user", Tab, "password", Enter in one burst, often while the
console is still starting. Run the real rm-tui in tmux and send the keys exactly so."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ADMIN_PASSWORD, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
RM_TUI = Path(sys.executable).with_name("rm-tui")


# A tmux server of our own: the default one is shared with whatever else runs tmux on the
# machine, and a session started just as another's last session ends finds that server
# exiting (new-session fails with exit 1).
SOCKET = f"rm-test-{uuid.uuid4().hex[:8]}"


def tmux(*args: str) -> str:
    done = subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True)
    assert done.returncode == 0, f"tmux {args[0]} failed ({done.returncode}): {done.stderr.strip()}"
    return done.stdout


@pytest.fixture(autouse=True, scope="module")
def tmux_server() -> Iterator[None]:
    # Kept up between this module's sessions (exit-empty off): otherwise the server exits with
    # the last session and the next new-session on the same socket can meet it on its way out.
    tmux("start-server", ";", "set-option", "-g", "exit-empty", "off")
    path = tmux("display-message", "-p", "#{socket_path}").strip()
    yield
    subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)
    Path(path).unlink(missing_ok=True)  # tmux leaves the socket file behind


async def signs_in_with_burst(server, session: str, keep: bool = False) -> str:
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40",
         f"{RM_TUI} --server {server.url}; sleep 30")
    try:
        # No pause at all: the keys are in the terminal before the app has drawn anything.
        tmux("send-keys", "-t", session, "operator", "Tab", ADMIN_PASSWORD, "Enter")

        def screen() -> str:
            return tmux("capture-pane", "-p", "-t", session)

        try:
            await wait_for(lambda: "pending" in screen(), timeout=30, what="the fleet with its hosts")
        except AssertionError:
            pass  # the assertion below shows what the terminal shows instead
        return screen()
    finally:
        if not keep:
            subprocess.run(["tmux", "-L", SOCKET, "kill-session", "-t", session], capture_output=True)


async def test_login_survives_keys_sent_in_one_burst(server):
    await server.enroll("web-1")
    for attempt in range(3):  # the lost Tab happened in 2 of 3 starts: one start proves little
        shown = await signs_in_with_burst(server, f"rmtui-{uuid.uuid4().hex[:8]}")
        assert "web-1" in shown and "1 host" in shown, f"start {attempt + 1}: not signed in:\n{shown}"
        assert ADMIN_PASSWORD not in shown


async def test_filter_typed_right_after_slash(server):
    """'/' then the filter at terminal speed: the characters after '/' must reach the box."""
    await server.enroll("web-1")
    await server.enroll("db-1")
    session = f"rmtui-{uuid.uuid4().hex[:8]}"
    await signs_in_with_burst(server, session, keep=True)
    try:
        tmux("send-keys", "-t", session, "/db", "Enter")
        try:
            await wait_for(lambda: "1 shown" in tmux("capture-pane", "-p", "-t", session), timeout=10,
                           what="filter applied")
        except AssertionError:
            pass  # the assertion below shows the screen
        shown = tmux("capture-pane", "-p", "-t", session)
        assert "1 shown" in shown, shown
        assert "db-1" in shown and "web-1" not in shown
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-session", "-t", session], capture_output=True)
