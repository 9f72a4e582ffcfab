"""Re-encrypt every encrypted column under the current (first) key of EXCHANGE_FIELD_KEYS."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from audit.actions import Action
from audit.actors import cli_actor
from audit.models import Outcome
from audit.services import audit_write
from core.crypto import current_key_id, encrypted_fields, rotate_field


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted field under the current (first) key of EXCHANGE_FIELD_KEYS, in batches "
        "by primary key, each batch its own transaction. Values already under the current key are skipped, "
        "so a run that stopped half-way can simply be started again. Remove an old key only after a run "
        "that reports 0 failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=1000, help="rows per transaction (default 1000)")

    def handle(self, *args, batch_size: int, verbosity: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        key_id = current_key_id()
        fields = encrypted_fields()
        totals = {"examined": 0, "reencrypted": 0, "already_current": 0, "failed": 0}
        failed_at: list[str] = []
        try:
            for model, field in fields:
                label = f"{model._meta.label}.{field.name}"
                pending = model._base_manager.filter(**{f"{field.attname}__isnull": False}).count()
                counts = dict.fromkeys(totals, 0)
                with tqdm(total=pending, desc=label, unit="row", file=sys.stderr, disable=verbosity < 1) as bar:
                    for batch in rotate_field(model, field, batch_size=batch_size):
                        counts["examined"] += batch.examined
                        counts["reencrypted"] += batch.reencrypted
                        counts["already_current"] += batch.already_current
                        counts["failed"] += len(batch.failed)
                        failed_at += [f"{label} row {pk}" for pk in batch.failed]
                        bar.update(batch.examined)
                for name, value in counts.items():
                    totals[name] += value
                if verbosity >= 1:
                    self.stdout.write(f"{label}: {self._counts(counts)}")
        except Exception as exc:
            self._audit(Outcome.ERROR, key_id, len(fields), totals, error=type(exc).__name__)
            raise
        outcome = Outcome.ERROR if totals["failed"] else Outcome.OK
        self._audit(outcome, key_id, len(fields), totals)
        self.stdout.write(f"current key {key_id}: {self._counts(totals)}")
        if failed_at:
            raise CommandError(
                f"{totals['failed']} value(s) could not be decrypted with any key and were left as they are "
                f"(first: {failed_at[0]}); keep the old keys until they are repaired"
            )

    @staticmethod
    def _counts(counts: dict[str, int]) -> str:
        text = (
            f"examined {counts['examined']}, re-encrypted {counts['reencrypted']}, "
            f"already current {counts['already_current']}"
        )
        return text + (f", failed {counts['failed']}" if counts["failed"] else "")

    @staticmethod
    def _audit(outcome: str, key_id: str, field_count: int, totals: dict[str, int], error: str = "") -> None:
        details: dict[str, int | str] = {"key_id": key_id, "fields": field_count, **totals}
        if error:
            details["error"] = error
        with transaction.atomic():
            audit_write(
                action=Action.KEYS_ROTATE,
                actor=cli_actor("rotate_keys"),
                outcome=outcome,
                object_type="field_keys",
                object_id=key_id,
                details=details,
            )
