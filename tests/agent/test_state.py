"""Outbox, scheduler, config/secrets and backoff on their own."""

from __future__ import annotations

import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from rm_agent.config import AgentConfig, ConfigError, atomic_write, load_config, save_config
from rm_agent.connection import ssl_param
from rm_agent.handlers import HANDLERS
from rm_agent.job_kinds import KINDS
from rm_agent.outbox import Outbox
from rm_agent.scheduler import Scheduler, latest_fire, next_fire
from rm_agent.secrets import SecretsCorrupt, SecretStore
from rm_core.backoff import Backoff
from rm_core.enums import JobKind
from rm_core.protocol import SERVER_TO_AGENT, RepoCredentials, ScheduleSet, ScheduleSpec

UTC = timezone.utc


# ---------------------------------------------------------------- outbox


def test_outbox_seq_ack_and_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    ob = Outbox(db)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    ob.start_job("J", "backup", {"started_at": "2024-01-01T00:00:00+00:00", "kind": "backup"})
    log = ob.append_logs("J", [("t", "stdout", "a"), ("t", "stderr", "b")])
    assert [ln["seq"] for ln in log["lines"]] == [2, 3]
    fin = ob.finish_job("J", {"state": "succeeded", "exit_code": 0})
    assert fin["seq"] == 4
    ob.close()
    ob = Outbox(db)  # a restarted agent still has every event, in order
    assert [(e.type, e.seq_hi) for e in ob.pending()] == [("job.started", 1), ("job.log", 3), ("job.finished", 4)]
    assert ob.running_jobs() == [] and ob.known_job("J")
    ob.ack("J", 3)
    assert [e.type for e in ob.pending()] == ["job.finished"] and ob.known_job("J")
    ob.ack("J", 4)
    assert ob.depth() == 0 and not ob.known_job("J")


def test_outbox_marks_jobs_of_a_dead_agent_lost(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "s.db")
    ob.start_job("J", "backup", {"started_at": "2024-01-01T00:00:00+00:00", "kind": "backup"})
    ob.append_logs("J", [("t", "stdout", "x")])
    ob.close()
    ob = Outbox(tmp_path / "s.db")
    assert ob.mark_lost(datetime.now(UTC)) == ["J"]
    fin = ob.pending()[-1]
    assert fin.type == "job.finished" and fin.payload["state"] == "lost" and fin.payload["seq"] == 3
    assert "stale lock" in fin.payload["error"] and "unlock" in fin.payload["error"]
    assert ob.mark_lost(datetime.now(UTC)) == []  # once


# ---------------------------------------------------------------- scheduler


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def sset(version: int, *schedules: dict) -> ScheduleSet:
    return ScheduleSet.model_validate({"version": version, "schedules": list(schedules)})


def spec(sid: str, cron: str | None = "0 2 * * *", tz: str = "UTC", **kw) -> dict:
    return {"id": sid, "name": sid, "cron": cron, "timezone": tz,
            "source_groups": [{"id": "g", "name": "g", "tag": "g", "includes": ["/x"]}], **kw}


def test_latest_and_next_fire_with_timezones() -> None:
    now = datetime(2024, 6, 1, 0, 30, tzinfo=UTC)  # 02:30 in Berlin (CEST, UTC+2)
    berlin = ScheduleSpec.model_validate(spec("s", tz="Europe/Berlin"))
    assert latest_fire(berlin, now) == datetime(2024, 6, 1, 0, 0, tzinfo=UTC)
    assert next_fire(berlin, now) == datetime(2024, 6, 2, 0, 0, tzinfo=UTC)
    exact = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
    assert latest_fire(ScheduleSpec.model_validate(spec("s")), exact) == exact  # a fire time is its own latest fire
    unknown = ScheduleSpec.model_validate(spec("s", tz="Mars/Base"))
    assert latest_fire(unknown, exact) == exact  # a zone this host lacks: UTC, not a crash


async def test_scheduler_fires_once_catches_up_once_and_skips_inactive(tmp_path: Path) -> None:
    clock = Clock(datetime(2024, 1, 1, 1, 0, tzinfo=UTC))
    fired: list[tuple[str, datetime]] = []

    async def on_fire(s, at):
        fired.append((s.id, at))

    ob = Outbox(tmp_path / "s.db")
    sch = Scheduler(ob, on_fire, clock)
    sch.apply(sset(3, spec("nightly"), spec("off", enabled=False), spec("man", cron=None, manual=True)))
    assert await sch.tick() == 0  # nothing due: a new schedule counts from now
    clock.now = datetime(2024, 1, 1, 2, 0, tzinfo=UTC)
    assert await sch.tick() == 1 and fired == [("nightly", clock.now)]
    assert await sch.tick() == 0
    # the agent is down for three days: one catch-up fire at start, not three
    ob.close()
    clock.now = datetime(2024, 1, 4, 9, 0, tzinfo=UTC)
    ob = Outbox(tmp_path / "s.db")
    sch = Scheduler(ob, on_fire, clock)
    assert sch.version == 3
    assert await sch.tick() == 1
    assert fired[-1] == ("nightly", datetime(2024, 1, 4, 2, 0, tzinfo=UTC))
    assert await sch.tick() == 0
    assert sch.next_wakeup() == datetime(2024, 1, 5, 2, 0, tzinfo=UTC)
    # replacing the set drops removed schedules and keeps the fire time of kept ones
    sch.apply(sset(4, spec("nightly")))
    assert set(ob.last_fires()) == {"nightly"}


# ---------------------------------------------------------------- config and secrets


def test_config_written_atomically_0600_and_loaded(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "agent.json"
    cfg = AgentConfig(server_url="https://s:8950", host_id="H", agent_token="T", fingerprint="ab" * 32)
    save_config(path, cfg)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(path) == cfg
    assert not [p for p in path.parent.iterdir() if p.name != "agent.json"]  # no temp file left
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="invalid"):
        load_config(path)
    with pytest.raises(ConfigError, match="enroll"):
        load_config(tmp_path / "missing.json")


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"old")


    with pytest.raises(TypeError):
        atomic_write(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f"]


def test_secrets_roundtrip_encrypted_and_corrupt_file_never_overwritten(tmp_path: Path) -> None:
    key = AgentConfig(server_url="https://s", host_id="h", agent_token="t").key_bytes()
    path = tmp_path / "secrets.enc"
    store = SecretStore(path, key)
    assert store.load() == {}
    creds = {"repo": RepoCredentials(url="rest:http://h/r", password="pw-123456", rest_user="u", rest_password="rp-98765")}
    store.save(creds)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert b"pw-123456" not in raw and b"rp-98765" not in raw
    assert SecretStore(path, key).load() == creds
    other = SecretStore(path, bytes(32))
    with pytest.raises(SecretsCorrupt, match="cannot be decrypted"):
        other.load()
    path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    corrupt = path.read_bytes()
    with pytest.raises(SecretsCorrupt):
        store.load()
    with pytest.raises(SecretsCorrupt):
        store.save(creds)
    assert path.read_bytes() == corrupt


# ---------------------------------------------------------------- backoff and TLS


def test_backoff_doubles_with_jitter_up_to_60s() -> None:
    low = Backoff(rng=lambda: 0.0)
    assert [low.next() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    high = Backoff(rng=lambda: 0.999999)
    delays = [high.next() for _ in range(9)]
    assert delays[0] == pytest.approx(1, rel=1e-3) and max(delays) <= 60 and delays[-1] == pytest.approx(60, rel=1e-3)
    high.reset()
    assert high.next() == pytest.approx(1, rel=1e-3)
    high.jump_to_cap()
    assert high.next() == pytest.approx(60, rel=1e-3)


def test_ssl_param_pins_only_https() -> None:
    import aiohttp

    assert ssl_param("http://h", "ab" * 32) is True
    assert ssl_param("https://h", None) is True
    assert isinstance(ssl_param("https://h", "ab" * 32), aiohttp.Fingerprint)


# ---------------------------------------------------------------- dispatch tables


def test_every_job_kind_and_server_message_has_a_handler() -> None:
    assert set(KINDS) == set(JobKind)
    assert set(HANDLERS) == set(SERVER_TO_AGENT)
