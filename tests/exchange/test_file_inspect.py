"""An operator's file (import_records) is checked to be text as an upload is, before anything is
registered; the upload, the operator's file and an evidence document share one hashing loop."""

from __future__ import annotations

import hashlib
import io
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from exchange.bulk.rows import FileRejected
from exchange.bulk.upload import file_inspect
from exchange.models import Submission

pytestmark = pytest.mark.django_db

CSV = b"member_reference,id_type\nA-1,CN_RIC\nA-2,CN_RIC\n"


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"", "empty"), (b"PK\x03\x04\x00\x00zipped", "NUL"), (b"member_reference\n\xff\xfe\xfa\n", "UTF-8")],
)
def test_a_file_that_is_not_text_is_refused_by_file_inspect_as_by_an_upload(tmp_path, content, why):
    path = tmp_path / "records.csv"
    path.write_bytes(content)
    with pytest.raises(FileRejected, match=why):
        file_inspect(path, fmt="csv")


def test_file_inspect_hashes_and_counts_a_text_file(tmp_path):
    path = tmp_path / "records.csv"
    path.write_bytes(CSV)
    stored = file_inspect(path, fmt="csv")
    assert (stored.sha256, stored.size, stored.data_rows) == (hashlib.sha256(CSV).hexdigest(), len(CSV), 2)


def test_import_records_refuses_a_binary_file_and_registers_nothing(bank_a, tmp_path):
    path = tmp_path / "records.csv"
    path.write_bytes(b"\x00" * 64 + CSV)
    with pytest.raises(CommandError, match="not text"):
        call_command("import_records", bank_a.code, str(path), "--no-progress", stdout=StringIO(), stderr=StringIO())
    assert not Submission.objects.exists()


def test_the_evidence_hash_stops_past_its_limit_before_reading_everything():
    from core.problems import PayloadTooLarge
    from exchange.evidence import hash_stream

    body = io.BytesIO(b"x" * 100)
    assert hash_stream(body.read, limit=100) == (hashlib.sha256(b"x" * 100).hexdigest(), 100)
    with pytest.raises(PayloadTooLarge):
        hash_stream(io.BytesIO(b"x" * 101).read, limit=100)
