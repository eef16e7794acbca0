"""Reading restic's ls/diff/forget --dry-run JSON, on lines captured from 0.14 and 0.18."""

import json
import stat

import pytest
from pydantic import ValidationError

from rm_core import queries as q
from rm_core import restic_listing as L

NODE_014 = ('{"name":"a.txt","type":"file","path":"/tmp/rq/src/a.txt","uid":0,"gid":0,"size":2,"mode":420,'
            '"permissions":"-rw-r--r--","mtime":"2026-11-29T09:36:17.962397044Z","struct_type":"node"}')
NODE_018_DIR = ('{"name":"src","type":"dir","path":"/tmp/rq/src","mode":2147484141,"permissions":"drwxr-xr-x",'
                '"mtime":"2026-11-29T09:36:17.966397044Z","inode":2236429,"message_type":"node","struct_type":"node"}')


@pytest.mark.parametrize("go_mode, expected", [
    (420, 0o100644), (2147484141, 0o040755), (134218239, 0o120777), (33554852, 0o010644),
    (2148532735, 0o041777),  # /tmp: dir + sticky
    (420 | (1 << 23), 0o104644),  # setuid
])
def test_unix_mode(go_mode, expected):
    assert L.unix_mode(go_mode) == expected
    assert stat.filemode(expected)[0] in "-dlp"


def test_ls_nodes_of_both_versions():
    file_entry = L.ls_entry(json.loads(NODE_014))
    assert file_entry == {"name": "a.txt", "type": "file", "size": 2, "mtime": "2026-11-29T09:36:17.962397044Z",
                          "mode": 0o100644}
    assert L.ls_kind(json.loads(NODE_014)) == "node" and L.ls_kind(json.loads(NODE_018_DIR)) == "node"
    assert L.ls_kind({"struct_type": "snapshot"}) == "snapshot"
    assert L.ls_entry(json.loads(NODE_018_DIR))["type"] == "dir"
    assert L.ls_entry({"name": "p", "type": "fifo", "size": 5})["type"] == "other"
    assert L.ls_entry({"name": "p", "type": "fifo", "size": 5})["size"] == 0
    assert q.LsEntry.model_validate(file_entry).mtime.microsecond == 962397


def test_parent_dir():
    assert L.parent_dir("/tmp") == "/" and L.parent_dir("/tmp/a") == "/tmp" and L.parent_dir("/tmp/a/") == "/tmp"


@pytest.mark.parametrize("modifier, change", [
    ("+", "added"), ("-", "removed"), ("M", "modified"), ("T", "type_changed"), ("TM", "type_changed"),
    ("U", "metadata"), ("?", "other"),
])
def test_diff_change(modifier, change):
    got = L.diff_change({"message_type": "change", "path": "/x", "modifier": modifier})
    assert got == {"path": "/x", "change": change, "modifier": modifier}
    assert L.diff_change({"message_type": "statistics"}) is None


def test_forget_preview_matches_014_reasons_without_ids():
    snap = {"time": "2026-11-29T09:36:18Z", "tree": "t2", "paths": ["/src"], "hostname": "vm", "tags": ["t"],
            "id": "9b" * 32, "short_id": "9b9b9b9b"}
    old = {"time": "2026-11-29T09:36:17Z", "tree": "t1", "paths": ["/src"], "id": "73" * 32, "short_id": "73737373"}
    reason = {k: v for k, v in snap.items() if k not in ("id", "short_id")}  # 0.14 leaves the id out
    doc = [{"keep": [snap], "remove": [old], "reasons": [{"snapshot": reason, "matches": ["last snapshot"]}]}]
    out = L.forget_preview(doc)
    assert [(i["action"], i["id"], i["reasons"]) for i in out] == [
        ("keep", "9b" * 32, ["last snapshot"]), ("remove", "73" * 32, [])]


def test_no_matching_id():
    assert L.no_matching_id('Fatal: no matching ID found for prefix "deadbeef"')
    assert L.no_matching_id('{"message_type":"exit_error","code":1,"message":"no matching ID found for prefix"}')
    assert L.no_matching_id("Fatal: failed to load snapshot abababab: open /r/snapshots/abab: no such file or directory")
    assert not L.no_matching_id("Fatal: failed to load snapshot abababab: ciphertext verification failed")


@pytest.mark.parametrize("path, norm", [("/", "/"), ("//", "/"), ("/etc/", "/etc"), ("/a//b", "/a/b"),
                                        ("/with space/x", "/with space/x")])
def test_normalize_dir(path, norm):
    assert q.normalize_dir(path) == norm


@pytest.mark.parametrize("path", ["etc", "", "/a/../b", "/a/./b", "/a\0b", "/" + "x" * 5000])
def test_normalize_dir_refuses(path):
    with pytest.raises(ValueError):
        q.normalize_dir(path)
    with pytest.raises(ValidationError):
        q.LsParams(snapshot_id="abcdef12", path=path)
