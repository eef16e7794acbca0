"""Text kept deflated and sent as ONE gzip member behind a small fresh head.

/metrics sends a few fleet lines made per scrape, then megabytes of per-host lines compressed
once per rebuild. Two gzip members one after another are valid gzip (RFC 1952 §2.2) and
Prometheus' reader takes them, but curl --compressed and other one-member readers stop after
the first and show only the fleet lines. So the per-host part is kept as raw deflate blocks
that end byte-aligned and not final (a sync flush); a scrape deflates its head the same way,
appends the kept blocks and a final empty block, and writes one gzip trailer. The trailer's
CRC-32 of head + tail comes from the two parts' CRCs: crc32_combine as zlib computes it
(zlib's crc32.c, multmodp/x2nmodp), which Python's zlib does not expose."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

_POLY = 0xEDB88320  # CRC-32's polynomial, bit-reflected
_GZIP_HEAD = bytes((0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255))  # deflate, no name, no mtime, OS unknown
_FINAL_EMPTY_BLOCK = b"\x03\x00"  # what a raw deflater emits when finished with nothing more


def _multmodp(a: int, b: int) -> int:
    """a * b modulo CRC-32's polynomial (both as reflected 32-bit polynomials)."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


_X2N = [1 << 30]  # x^(2^k) modulo the polynomial, k = 0..31
for _ in range(31):
    _X2N.append(_multmodp(_X2N[-1], _X2N[-1]))


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A + B from crc32(A), crc32(B) and len(B)."""
    op, k = 1 << 31, 3  # x^0; a byte is x^8 = x^(2^3)
    while len2:
        if len2 & 1:
            op = _multmodp(_X2N[k & 31], op)
        len2 >>= 1
        k += 1
    return _multmodp(op, crc1) ^ crc2


def _deflate_open(parts: Iterable[bytes], level: int) -> tuple[bytes, int, int]:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)  # raw deflate: the gzip frame is ours
    blocks, crc, size = [], 0, 0
    for part in parts:
        blocks.append(compressor.compress(part))
        crc, size = zlib.crc32(part, crc), size + len(part)
    blocks.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(blocks), crc, size


@dataclass(frozen=True)
class PackedText:
    """Text as raw deflate blocks ending byte-aligned and not final, with its CRC-32 and size."""

    blocks: bytes
    crc: int
    size: int

    @classmethod
    def pack(cls, parts: Iterable[bytes], level: int = 1) -> PackedText:
        """`parts` one after another, each compressed as it comes (a generator's parts need
        not all exist at once)."""
        return cls(*_deflate_open(parts, level))

    def text(self) -> bytes:
        return zlib.decompress(self.blocks + _FINAL_EMPTY_BLOCK, -15)

    def gzip_after(self, head: bytes) -> bytes:
        """One gzip member holding `head` and then this text."""
        head_blocks, head_crc, _ = _deflate_open([head], 1)
        crc = crc32_combine(head_crc, self.crc, self.size)
        trailer = struct.pack("<II", crc, (len(head) + self.size) & 0xFFFFFFFF)
        return b"".join((_GZIP_HEAD, head_blocks, self.blocks, _FINAL_EMPTY_BLOCK, trailer))
