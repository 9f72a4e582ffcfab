"""The migrations that took plain digests and plaintext responses out of the database convert
rows in place: a retry across the upgrade still replays, a resubmitted file is still found."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from core.tokens import keyed_digest
from exchange.bulk.upload import DIGEST_PURPOSE
from exchange.idempotency import FINGERPRINT_PURPOSE, response_open

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("exchange", "0003_human_labels")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def latest():
    executor = MigrationExecutor(connection)
    return [key for key in executor.loader.graph.leaf_nodes() if key[0] == "exchange"]


def test_rows_are_converted_in_place_and_back(bank_a):
    old = migrate(BEFORE)
    plain_print = hashlib.sha256(b"a request").hexdigest()
    plain_file = hashlib.sha256(b"a file").hexdigest()
    body = {"results": [{"member_reference": "LOAN-OLD-1"}]}
    key = old.get_model("exchange", "IdempotencyKey").objects.create(
        member_id=bank_a.member.pk,
        key="k-1",
        fingerprint=plain_print,
        completed=True,
        response_status=201,
        response_body=json.dumps(body),
        locked_until=timezone.now(),
    )
    submission = old.get_model("exchange", "Submission").objects.create(
        member_id=bank_a.member.pk, actor="test", format="csv", sha256=plain_file, size=6, file_name="x.csv"
    )
    try:
        new = migrate(latest())
        row = new.get_model("exchange", "IdempotencyKey").objects.get(pk=key.pk)
        assert row.fingerprint == keyed_digest(FINGERPRINT_PURPOSE, str(bank_a.member.pk), plain_print)
        assert b"LOAN-OLD-1" not in bytes(row.response_sealed)
        assert response_open(row.pk, row.response_sealed) == body
        stored = new.get_model("exchange", "Submission").objects.get(pk=submission.pk)
        assert stored.file_digest == keyed_digest(DIGEST_PURPOSE, str(bank_a.member.pk), plain_file)
        back = migrate(BEFORE)
        assert json.loads(back.get_model("exchange", "IdempotencyKey").objects.get(pk=key.pk).response_body) == body
    finally:
        migrate(latest())
