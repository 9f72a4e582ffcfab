"""core.streams.hash_blocks: the one read-hash-count loop of uploads, operators' files and evidence."""

from __future__ import annotations

import hashlib
import io

import pytest

from core.streams import hash_blocks


def test_it_hashes_counts_keeps_the_head_and_passes_each_block_on():
    data = b"line one\nline two\nlast"
    written = io.BytesIO()
    hashed = hash_blocks(io.BytesIO(data).read, block_size=5, head_bytes=7, sink=written.write)
    assert hashed.sha256 == hashlib.sha256(data).hexdigest() and hashed.size == len(data)
    assert (hashed.head, hashed.newlines, hashed.last) == (b"line on", 2, b"t")
    assert written.getvalue() == data


def test_past_the_limit_it_raises_before_passing_the_block_on():
    written = io.BytesIO()

    class TooLarge(Exception):
        pass

    with pytest.raises(TooLarge):
        hash_blocks(io.BytesIO(b"x" * 12).read, block_size=5, limit=10, too_large=TooLarge, sink=written.write)
    assert written.getvalue() == b"x" * 10
    assert hash_blocks(io.BytesIO(b"").read, block_size=5).size == 0
