"""packed_text: a kept deflated tail behind a fresh head is one gzip member with the right
CRC-32 and size, whatever the parts' sizes."""

from __future__ import annotations

import gzip
import os
import random
import zlib

import pytest

from rm_server.packed_text import PackedText, crc32_combine


@pytest.mark.parametrize("len_a,len_b", [(0, 0), (0, 7), (7, 0), (1, 1), (1000, 123_457), (65_537, 3), (5, 1 << 20)])
def test_crc32_combine_is_the_crc_of_the_concatenation(len_a, len_b):
    a, b = os.urandom(len_a), os.urandom(len_b)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len_b) == zlib.crc32(a + b)


def test_gzip_after_is_one_member_holding_head_then_text():
    rng = random.Random(7)
    parts = [("".join(rng.choice("ab\n{}=") for _ in range(rng.randrange(0, 50_000)))).encode() for _ in range(9)]
    packed = PackedText.pack(iter(parts))  # a generator: parts are compressed as they come
    assert packed.text() == b"".join(parts) and packed.size == sum(map(len, parts))
    for head in (b"", b"# fleet\nrm_hosts 3\n", os.urandom(70_000)):
        body = packed.gzip_after(head)
        one = zlib.decompressobj(16 + zlib.MAX_WBITS)  # a one-member reader, as curl --compressed
        assert one.decompress(body) == head + b"".join(parts)
        assert one.eof and not one.unused_data
        assert gzip.decompress(body) == head + b"".join(parts)  # gzip's own check of CRC and size


def test_a_wrong_crc_would_be_caught():
    packed = PackedText.pack([b"x" * 1000])
    body = bytearray(packed.gzip_after(b"head"))
    body[-8] ^= 1
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(bytes(body))
