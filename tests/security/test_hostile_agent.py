"""What one enrolled agent host can do to others through its WebSocket (item 2)."""

from __future__ import annotations

import asyncio
import logging

from rm_core import protocol as p
from rm_core.ids import new_id
from tests.conftest import TestAgent, wait_for
from tests.security.helpers import raw_frame
from tests.server.server_helpers import now, online_host, started

BAD_TS = "0001-01-01T00:00:00+14:00"


async def test_bad_values_from_one_agent_do_not_fail_other_hosts_writes(server, caplog):
    """A hostile agent interleaves unstorable values (a year-1 timestamp at +14:00, 2**64
    versions) with a victim's 300 log lines: the victim stores all 300 and every one of
    its hellos succeeds, the hostile frames are refused, and the server log gets one line
    per bad frame naming the hostile host, not a traceback per victim."""
    caplog.set_level(logging.INFO)
    victim_id, victim = await online_host(server, "victim")
    hostile_id, hostile = await online_host(server, "hostile")
    vjob, hjob = new_id(), new_id()
    await victim.send(started(vjob, kind="check"))
    await hostile.send(started(hjob, kind="check"))
    await victim.expect("ack")
    await hostile.expect("ack")

    bad_frames = 0
    for i in range(30):
        seqs = range(2 + i * 10, 12 + i * 10)
        await victim.send(p.JobLog(job_id=vjob, lines=[p.LogLine(seq=s, ts=now(), text=f"victim {s}") for s in seqs]))
        await hostile.ws.send_str(raw_frame("job.log", {"job_id": hjob, "lines": [
            {"seq": 2 + i, "ts": BAD_TS, "text": "poison"}]}))
        await hostile.ws.send_str(raw_frame("schedule.ack", {"version": 2**64}))
        bad_frames += 2

    async def acked_all() -> bool:
        while True:
            env = await victim.expect("ack", "error")
            assert env.type == "ack", env
            if env.payload.upto_seq >= 301:
                return True

    await asyncio.wait_for(acked_all(), 15)
    status, page = await server.call("GET", f"/jobs/{vjob}/logs?limit=1000", role="viewer")
    assert status == 200, page
    assert [ln["text"] for ln in page["lines"]] == [f"victim {s}" for s in range(2, 302)]

    # The victim reconnects ten times while the hostile host keeps sending a bad hello.
    _, victim_token = victim.server, victim.token
    for _ in range(10):
        await victim.close()
        bad = TestAgent(server, (await server.enroll("hostile-2"))[1])
        await bad.connect(hello=False)
        await bad.ws.send_str(raw_frame("hello", {"protocol_version": 1, "agent_version": "x", "hostname": "h",
                                                  "applied_schedule_version": 2**64}))
        victim = TestAgent(server, victim_token)
        ok = await victim.connect()
        assert ok.type == "hello.ok", ok
        await bad.close()

    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, tracebacks[0].getMessage()
    assert not any(victim_id in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    about_hostile = [r for r in caplog.records if hostile_id in r.getMessage() and r.levelno >= logging.WARNING]
    assert 1 <= len(about_hostile) <= bad_frames
    await wait_for(lambda: True)
    await victim.close()
    await hostile.close()


async def test_what_an_agent_says_about_itself_cannot_carry_control_characters(server):
    """os, arch and versions from hello are shown in the console: bidi and escape
    characters arrive as U+FFFD, and the hello still succeeds."""
    host_id, token = await server.enroll("plain")
    agent = TestAgent(server, token)
    await agent.connect(hello=False)
    await agent.ws.send_str(raw_frame("hello", {
        "protocol_version": 1, "agent_version": "1.0\x1b[2J", "hostname": "h", "os": "\u202exunil",
        "arch": "x86_64\r\nroot", "restic_version": "0.14\u2066"}))
    env = await agent.expect("hello.ok", "error")
    assert env.type == "hello.ok", env
    status, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
    shown = " ".join(str(host[k]) for k in ("os", "arch", "agent_version", "restic_version"))
    assert not any(ch in shown for ch in "\x1b\u202e\r\n\u2066"), shown
    await agent.close()
