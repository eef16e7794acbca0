"""Ids are strictly increasing within a process, even inside one millisecond."""

from rm_core.ids import id_time_ms, new_id


def test_ids_strictly_increase_within_a_millisecond():
    ids = [new_id() for _ in range(5000)]  # thousands per millisecond on any machine
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_ids_keep_order_when_the_clock_steps_back(monkeypatch):
    first = new_id()
    monkeypatch.setattr("rm_core.ids.time.time", lambda: 1_000_000.0)  # 1970: far back
    second = new_id()
    assert second > first and len(second) == 26


def test_explicit_time_is_encoded():
    assert id_time_ms(new_id(1_700_000_000_123)) == 1_700_000_000_123
