"""Reading a byte stream once in blocks while hashing it: an upload stored to disk, an operator's
file inspected in place, an evidence document hashed and dropped. One loop for the three."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Hashed:
    sha256: str  # hex digest of the whole stream
    size: int  # bytes read
    head: bytes  # the first `head_bytes` bytes (for a sniff of the content)
    newlines: int  # b"\n" bytes seen
    last: bytes  # the last byte, b"" for an empty stream


def hash_blocks(
    read: Callable[[int], bytes],
    *,
    block_size: int,
    limit: int | None = None,
    too_large: Callable[[], BaseException] | None = None,
    head_bytes: int = 0,
    sink: Callable[[bytes], object] | None = None,
) -> Hashed:
    """Read `read(block_size)` until it returns b"", hashing and counting on the way, and handing
    each block to `sink` (a file's write) if given. Past `limit` bytes, raises `too_large()` before
    the block that crossed it is hashed or passed on. Nothing is kept but the head."""
    digest = hashlib.sha256()
    size = newlines = 0
    head = last = b""
    while block := read(block_size):
        size += len(block)
        if limit is not None and size > limit:
            raise too_large() if too_large is not None else ValueError(f"more than {limit} bytes")
        if len(head) < head_bytes:
            head += block[: head_bytes - len(head)]
        digest.update(block)
        newlines += block.count(b"\n")
        last = block[-1:]
        if sink is not None:
            sink(block)
    return Hashed(digest.hexdigest(), size, head, newlines, last)
