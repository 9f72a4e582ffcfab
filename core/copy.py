"""PostgreSQL COPY text: escaping a value and streaming lines into a table (psycopg 3's copy)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection
from django.db.models import Model

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_BLOCK = 1 << 18  # characters sent to COPY at a time


def copy_text(value: str) -> str:
    """`value` as one field of a COPY text line."""
    # Most values need no escape; translate() with a mapping is slow even on those.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_ESCAPES)
    return value


def copy_lines(
    cursor, model: type[Model], attnames: Sequence[str], lines: Iterable[str], *, table: str | None = None
) -> None:
    """COPY `lines` (tab-separated fields of `attnames`, each ending in a newline) into the model's
    table, or into `table` shaped like it. `cursor` is psycopg's own (`wrapper.cursor`). A generator
    of lines is sent block by block, so the server stores one block while the next is made."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(model._meta.get_field(name).column) for name in attnames)
    with cursor.copy(f"COPY {quote(table or model._meta.db_table)} ({columns}) FROM STDIN") as copy:
        block: list[str] = []
        size = 0
        for line in lines:
            block.append(line)
            size += len(line)
            if size >= _BLOCK:
                copy.write("".join(block))
                block, size = [], 0
        if block:
            copy.write("".join(block))
