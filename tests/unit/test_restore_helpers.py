"""Pure restore/drill helpers: include escaping, params, sampling, restic's nanosecond times."""

import json
import os
import random
from collections import Counter

import pytest
from pydantic import ValidationError

import rm_core.restore as restore_mod
from rm_core.drills import DrillPolicy
from rm_core.restore import RestoreParams, SampleReservoir, include_pattern, mtime_ns, restore_args


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


def ls_lines(sizes, v018=False):
    """`restic ls --json` output as 0.14 (struct_type) or 0.18 (message_type) prints it."""
    kind = {"message_type": "{}"} if v018 else {"struct_type": "{}"}

    def line(**fields):
        extra = {k: v.format(fields.pop("_kind")) for k, v in kind.items()}
        return json.dumps({**fields, **extra}, separators=(",", ":"))

    yield line(_kind="snapshot", id="ab" * 32, short_id="abababab", tags=["docs"])
    yield line(_kind="node", name="d", type="dir", path="/d")
    for i, size in enumerate(sizes):
        yield line(_kind="node", name=f"f{i}", type="file", path=f"/d/f{i}", size=size, mtime="2023-11-14T22:13:20Z")
    yield line(_kind="node", name="l", type="symlink", path="/d/l")


def drawn(sizes, max_files, max_bytes, seed=None, v018=False):
    res = SampleReservoir(max_files, max_bytes, random.Random(seed) if seed is not None else None)
    for ln in ls_lines(sizes, v018):
        res.feed(ln)
    return res


@pytest.mark.parametrize("v018", [False, True])
def test_sample_respects_counts_and_bytes(v018):
    sizes = [i * 10 for i in range(100)]
    res = drawn(sizes, 5, 10_000, 1, v018)
    sample = res.sample()
    assert res.files == 100 and res.snapshot["short_id"] == "abababab"
    assert len(sample) == 5 and sample == sorted(sample, key=lambda f: f.path)
    assert all(f.path.startswith("/d/f") and f.size == int(f.path[4:]) * 10 for f in sample)
    sample = drawn(sizes, 100, 100, 2, v018).sample()
    assert sum(f.size for f in sample) <= 100 and sample
    assert drawn([10**9], 5, 100).sample() == [], "a file larger than the whole budget is passed over"
    assert drawn(sizes, 5, 10_000, 3).sample() != drawn(sizes, 5, 10_000, 4).sample()
    assert drawn([], 5, 100, 1, v018).sample() == [] and drawn([], 5, 100, 1, v018).files == 0


def test_sample_is_uniform_and_fills_around_big_files():
    counts = Counter(f.path for seed in range(3000) for f in drawn([1] * 10, 2, 100, seed).sample())
    assert set(counts) == {f"/d/f{i}" for i in range(10)}
    assert all(450 < c < 750 for c in counts.values()), counts  # 600 each expected
    # big files that no longer fit are skipped, not the end of the sample
    sample = drawn([60, 60, 60] + [1] * 20, 5, 100, 7).sample()
    assert len(sample) == 5 and sum(f.size for f in sample) <= 100


def test_sample_parses_only_candidates(monkeypatch):
    parsed = []
    real = restore_mod.parse_json_line
    monkeypatch.setattr(restore_mod, "parse_json_line", lambda line: parsed.append(line) or real(line))
    res = drawn([1] * 20_000, 5, 10_000, 5)
    assert res.files == 20_000 and len(res.sample()) == 5
    assert len(parsed) < 1_000, f"{len(parsed)} lines parsed: the listing is not streamed"


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
