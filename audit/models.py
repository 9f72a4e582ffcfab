"""The audit log: one append-only row per action, chained and signed when sealed."""

from __future__ import annotations

from django.db import models


class Outcome(models.TextChoices):
    OK = "ok", "ok"
    DENIED = "denied", "denied"
    ERROR = "error", "error"


class AuditEvent(models.Model):
    """An action. Inserted once; `seq`, `prev_hash` and `hash` are set once at sealing; never changed."""

    id = models.BigAutoField(primary_key=True)
    # Chain position, given by the sealer in commit order (not at insert), so a rolled-back
    # transaction leaves no hole in the chain.
    seq = models.BigIntegerField(null=True, blank=True)
    occurred_at = models.DateTimeField()
    actor = models.CharField(max_length=120)
    member_code = models.CharField(max_length=32, blank=True)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=32, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    subject_token = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.OK)
    request_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL until sealed
    hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL until sealed

    class Meta:
        ordering = ["id"]
        permissions = [("export_auditevent", "Can download audit exports and run chain verification")]
        # The sealer reads the unsealed events in id order: a partial index on id gives them in
        # order without walking the sealed ones (on seq, it made each batch scan the whole table).
        # Every insert pays for every index, and sealing (which sets the indexed `seq`) writes a
        # new entry in each of them again: only the indexes that readers need, and the ones on
        # `seq` partial, so that an unsealed event is in neither chain index (docs/audit.md).
        # Plain indexes, not db_index, which adds a second LIKE index to every text column.
        indexes = [
            models.Index(fields=["id"], name="audit_unsealed_id_idx", condition=models.Q(seq__isnull=True)),
            models.Index(fields=["occurred_at"], name="audit_occurred_at_idx"),
            models.Index(fields=["member_code", "occurred_at"], name="audit_member_time_idx"),
            models.Index(fields=["subject_token"], name="audit_subject_idx"),
            # The compliance rules count refusals per member and hour; refusals are a small share.
            models.Index(
                fields=["occurred_at", "member_code"],
                name="audit_denied_time_idx",
                condition=models.Q(outcome="denied"),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["seq"], name="audit_seq_unique", condition=models.Q(seq__isnull=False)),
            models.CheckConstraint(
                condition=(
                    models.Q(seq__isnull=True, hash__isnull=True, prev_hash__isnull=True)
                    | models.Q(seq__isnull=False, hash__isnull=False, prev_hash__isnull=False)
                ),
                name="audit_sealed_all_or_nothing",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq or '-'} {self.action} {self.outcome}"


class Checkpoint(models.Model):
    """An Ed25519 signature over (seq, hash, signed_at) of the newest sealed event."""

    id = models.BigAutoField(primary_key=True)
    seq = models.BigIntegerField(db_index=True)
    hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    public_key = models.CharField(max_length=64)
    signature = models.CharField(max_length=128)

    class Meta:
        ordering = ["seq", "id"]

    def __str__(self) -> str:
        return f"checkpoint at #{self.seq}"
