"""Ids are strictly increasing within a process, even inside one millisecond."""

import random

from rm_core.ids import _encode, id_time_ms, new_id, new_ids


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


def test_batch_ids_keep_the_order_of_single_ones():
    before = new_id()
    batch = new_ids(3000)
    after = new_id()
    assert before < batch[0] and batch == sorted(batch) and len(set(batch)) == 3000 and batch[-1] < after
    assert new_ids(0) == []


def test_encoding_is_crockford_base32_of_the_value():
    # The table-driven encoder against the definition: 26 digits of 5 bits, most significant first.
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    for value in (0, 1, 31, 32, 2**48 - 1, 2**128 - 1, *(random.getrandbits(128) for _ in range(2000))):
        digits = "".join(alphabet[(value >> (5 * i)) & 31] for i in range(25, -1, -1))
        assert _encode(value) == digits
