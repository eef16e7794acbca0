"""Pure restic helpers: retention, redaction, parsing, exit-code classification."""

from __future__ import annotations

import pytest

from rm_core.enums import JobState
from rm_core.protocol import Retention
from rm_core import restic as r


def test_retention_args_in_flag_order_and_skips_zero() -> None:
    pol = Retention(keep_last=3, keep_daily=7, keep_weekly=0, keep_within="2d")
    assert r.retention_args(pol) == ["--keep-last", "3", "--keep-daily", "7", "--keep-within", "2d"]


@pytest.mark.parametrize("pol", [None, {}, {"keep_last": 0}, Retention(keep_within=None)])
def test_empty_retention_is_refused(pol) -> None:
    with pytest.raises(r.EmptyRetentionPolicy, match="remove every snapshot"):
        r.retention_args(pol)


def test_forget_args_needs_a_tag() -> None:
    assert r.forget_args("home", {"keep_last": 1}) == ["forget", "--json", "--tag", "home", "--keep-last", "1"]
    with pytest.raises(ValueError, match="no tag"):
        r.forget_args("", {"keep_last": 1})


def test_redact_userinfo_and_secrets() -> None:
    line = "Fatal: unable to open rest:http://alice:s3cr3t@host:8000/repo/ using pw hunter2"
    out = r.redact(line, ["hunter2"])
    assert "s3cr3t" not in out and "hunter2" not in out
    assert "alice:***@host" in out and "pw ***" in out
    # a URL-quoted secret is hidden too
    assert "p%40ss" not in r.redact("rest:http://u:p%40ss@h/", ["p@ss"])
    # short or empty secrets do not wreck the line
    assert r.redact("abc", ["", None, "a"]) == "abc"


def test_parse_version() -> None:
    assert r.parse_version("restic 0.14.0 compiled with go1.19.8 on linux/amd64") == (0, 14, 0)
    assert r.parse_version("restic 0.18.0 compiled with go1.24") == (0, 18, 0)
    assert r.parse_version("nonsense") is None


def test_backup_json_lines() -> None:
    status = r.parse_json_line('{"message_type":"status","percent_done":0.5,"total_files":4,"total_bytes":10}')
    prog = r.progress_from_status(status)
    assert prog is not None and prog.percent == 50.0 and prog.files_total == 4 and prog.bytes_done is None
    summ = r.backup_summary(
        r.parse_json_line(
            '{"message_type":"summary","files_new":1,"data_added":1055,"snapshot_id":"0e1f473c","x":1}'
        )
    )
    assert summ == {"files_new": 1, "data_added": 1055, "snapshot_id": "0e1f473c"}
    assert r.parse_json_line("Fatal: nope") is None
    assert r.parse_json_line("{broken") is None
    err = r.parse_json_line('{"message_type":"error","error":{"message":"permission denied"},"item":"/x"}')
    assert r.error_message(err) == "/x: permission denied"


def test_parse_snapshots_forget_stats() -> None:
    snaps = r.parse_snapshots(
        '[{"time":"2024-01-01T00:00:00Z","paths":["/a"],"hostname":"vm","id":"0e1f473c407ad9e7","short_id":"0e1f473c","tags":["t"]}]\n'
    )
    assert snaps[0]["id"] == "0e1f473c407ad9e7" and snaps[0]["tags"] == ["t"]
    assert r.parse_snapshots("") == [] and r.parse_snapshots("null") == []
    forget = r.parse_forget('[{"tags":["t"],"keep":[{"id":"a"}],"remove":[{"id":"b"},{"id":"c"}],"reasons":[]}]')
    assert forget == {"keep": 1, "remove": 2, "removed_ids": ["b", "c"]}
    assert r.parse_forget("") == {"keep": 0, "remove": 0, "removed_ids": []}
    stats = r.parse_stats('{"total_size":787,"total_file_count":0,"snapshots_count":1}')
    assert stats["total_size"] == 787
    with pytest.raises(ValueError):
        r.parse_stats("[]")


@pytest.mark.parametrize(
    ("code", "stderr", "state", "err"),
    [
        (0, "", JobState.succeeded, None),
        (3, "", JobState.warning, "partial_backup"),
        (12, "", JobState.failed, r.ERR_WRONG_PASSWORD),
        (11, "", JobState.failed, r.ERR_LOCKED),
        (10, "", JobState.failed, r.ERR_REPO_MISSING),
        (1, "Fatal: wrong password or no key found\n", JobState.failed, r.ERR_WRONG_PASSWORD),
        (1, "Fatal: unable to create lock in backend: repository is already locked by PID 1", JobState.failed, r.ERR_LOCKED),
        (1, "Fatal: unable to open config file: stat /x/config: no such file\nIs there a repository at the following location?\n/x", JobState.failed, r.ERR_REPO_MISSING),
        (1, "Fatal: something odd\n", JobState.failed, r.ERR_FATAL),
        (130, "", JobState.failed, r.ERR_INTERRUPTED),
    ],
)
def test_classify_exit(code, stderr, state, err) -> None:
    out = r.classify_exit(code, stderr)
    assert out.state == state and out.error_code == err
    if err == r.ERR_FATAL:
        assert out.error == "Fatal: something odd"


def test_classify_cancelled_wins() -> None:
    assert r.classify_exit(130, "", cancelled=True).state == JobState.cancelled


def test_check_passed() -> None:
    assert r.check_passed("load indexes\nno errors were found\n")
    assert not r.check_passed("Fatal: repository contains errors")


def test_strip_ansi() -> None:
    assert r.strip_ansi("\x1b[2Ksignal interrupt received, cleaning up") == "signal interrupt received, cleaning up"


def test_error_line_skips_go_stack_trace_and_forget_removal_error() -> None:
    # restic 0.14 `forget` against an append-only REST server (measured)
    stderr = (
        "Remove(<snapshot/87d49c7677>) returned error, retrying after 1.5s: blob not removed, server response: 403 Forbidden (403)\n"
        "blob not removed, server response: 403 Forbidden (403)\n"
        "github.com/restic/restic/internal/backend/rest.(*Backend).Remove\n"
        "\tgithub.com/restic/restic/internal/backend/rest/rest.go:399\n"
        "main.deleteFiles.func2\n"
        "\tgithub.com/restic/restic/cmd/restic/delete.go:47\n"
        "runtime.goexit\n"
        "\truntime/asm_amd64.s:1594\n"
    )
    assert r.classify_exit(1, stderr).error == "blob not removed, server response: 403 Forbidden (403)"
    # restic 0.18 exits 0 in the same case; this line is how the agent notices
    line = "unable to remove snapshot/337d75c2 from the repository"
    assert r.forget_removal_error(f"Remove(<snapshot/337d75c2>) failed: 403\n{line}\n") == line
    assert r.forget_removal_error("") is None


def test_check_summary_json() -> None:
    out = '{"message_type":"summary","num_errors":0,"broken_packs":null,"suggest_repair_index":false}'
    assert r.check_summary("noise\n" + out)["num_errors"] == 0
    assert r.check_summary("no errors were found") is None
