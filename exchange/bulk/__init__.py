"""Bulk files of records: `upload` stores them, `rows` reads them, `worker` processes them."""
