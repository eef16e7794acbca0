"""Pure restore/drill helpers: include escaping, params, sampling, restic's nanosecond times."""

import os
import random

import pytest
from pydantic import ValidationError

from rm_core.drills import DrillPolicy
from rm_core.restore import (
    RestoreParams, SampleFile, choose_sample, file_nodes, include_pattern, mtime_ns, restore_args,
)


def test_include_pattern_escapes_glob_characters():
    assert include_pattern("/srv/plain/file.txt") == "/srv/plain/file.txt"
    assert include_pattern("/srv/we[ir]d*dir/f?.txt") == r"/srv/we\[ir\]d\*dir/f\?.txt"
    assert include_pattern("/a\\b") == "/a\\\\b"


def test_restore_params_and_args():
    params = RestoreParams(snapshot_id="abcdef12", paths=["/etc/x[1]"], target="/var/tmp/r", verify=True)
    assert restore_args(params) == ["restore", "abcdef12", "--target", "/var/tmp/r", "--include", r"/etc/x\[1\]",
                                    "--verify"]
    assert "--verify" not in restore_args(params.model_copy(update={"verify": False}))
    for bad in ({"paths": ["etc"]}, {"paths": ["/a\0b"]}, {"target": "rel"}, {"snapshot_id": "xyz"}):
        with pytest.raises(ValidationError):
            RestoreParams.model_validate({"snapshot_id": "abcdef12", "target": "/t", **bad})


def test_sample_respects_counts_and_bytes():
    files = [SampleFile(path=f"/d/f{i}", size=i * 10) for i in range(100)]
    sample = choose_sample(files, 5, 10_000, random.Random(1))
    assert len(sample) == 5 and sample == sorted(sample, key=lambda f: f.path)
    sample = choose_sample(files, 100, 100, random.Random(2))
    assert sum(f.size for f in sample) <= 100 and sample
    assert choose_sample([SampleFile(path="/huge", size=10**9)], 5, 100) == []
    assert choose_sample(files, 5, 10_000, random.Random(3)) != choose_sample(files, 5, 10_000, random.Random(4))


def test_file_nodes_take_only_files():
    nodes = [{"type": "dir", "path": "/d"}, {"type": "file", "path": "/d/a", "size": 3, "mtime": "x"},
             {"type": "symlink", "path": "/d/l"}]
    assert [f.path for f in file_nodes(nodes)] == ["/d/a"]


def test_mtime_ns_matches_stat(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    os.utime(f, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    assert mtime_ns("2023-11-14T22:13:20.123456789Z") == f.stat().st_mtime_ns
    assert mtime_ns("2023-11-14T23:13:20.123456789+01:00") == 1_700_000_000_123_456_789
    assert mtime_ns("2023-11-14T22:13:20Z") == 1_700_000_000_000_000_000
    assert mtime_ns("garbage") is None and mtime_ns(None) is None


def test_drill_policy_bounds():
    assert DrillPolicy().sample_files == 20
    with pytest.raises(ValidationError):
        DrillPolicy(sample_files=0)
    with pytest.raises(ValidationError):
        DrillPolicy(extra=1)
