"""Delinquency records (current state plus every version), consents, inquiries and disputes.

Every subject-scoped table carries the subject token, so the tables can later be distributed
by token (see docs/scaling.md); no table holds a raw identifier.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from core.crypto import EncryptedTextField, SealedBinaryField
from members.models import Member

PAYMENT_CODES = frozenset("N1234567CBDZ*")


class Product(models.TextChoices):
    CONSUMER_LOAN = "consumer_loan", "Consumer loan"
    CREDIT_LINE = "credit_line", "Credit line"
    CREDIT_CARD = "credit_card", "Credit card"
    MORTGAGE = "mortgage", "Mortgage"
    AUTO_LOAN = "auto_loan", "Auto loan"
    BUSINESS_LOAN = "business_loan", "Business loan"
    BNPL = "bnpl", "Buy now, pay later"
    OTHER = "other", "Other"


class RecordStatus(models.TextChoices):
    DELINQUENT = "delinquent"
    RESTRUCTURED = "restructured"
    SETTLED = "settled"
    WRITTEN_OFF = "written_off", "Written off"


OPEN_STATUSES = (RecordStatus.DELINQUENT, RecordStatus.RESTRUCTURED)


class IdType(models.TextChoices):
    CN_RIC = "CN_RIC", "Resident ID (CN)"
    CN_USCC = "CN_USCC", "Unified social credit code (CN)"
    CN_MOBILE = "CN_MOBILE", "Mobile number (CN)"
    PASSPORT = "PASSPORT", "Passport"


class RecordData(models.Model):
    """The reported fields, shared by the current record and each of its versions."""

    subject_token = models.CharField(max_length=64)
    id_type = models.CharField("ID type", max_length=12, choices=IdType.choices)
    name = EncryptedTextField(null=True, blank=True)
    product = models.CharField(max_length=16, choices=Product.choices)
    currency = models.CharField(max_length=3, default="CNY")
    principal = models.BigIntegerField(help_text="minor units")
    amount_overdue = models.BigIntegerField(help_text="minor units")
    days_past_due = models.IntegerField()
    status = models.CharField(max_length=16, choices=RecordStatus.choices)
    opened_on = models.DateField()
    delinquent_since = models.DateField()
    as_of = models.DateField()
    notice_sent_on = models.DateField()
    settled_on = models.DateField(null=True, blank=True)
    payment_history = models.CharField(max_length=24, blank=True, default="")

    DATA_FIELDS = (
        "subject_token",
        "id_type",
        "product",
        "currency",
        "principal",
        "amount_overdue",
        "days_past_due",
        "status",
        "opened_on",
        "delinquent_since",
        "as_of",
        "notice_sent_on",
        "settled_on",
        "payment_history",
    )

    class Meta:
        abstract = True

    @staticmethod
    def data_constraints(prefix: str) -> list:
        return [
            models.CheckConstraint(
                condition=Q(principal__gte=0, amount_overdue__gte=0, days_past_due__gte=0),
                name=f"{prefix}_non_negative",
            ),
            models.CheckConstraint(condition=Q(status__in=RecordStatus.values), name=f"{prefix}_status_valid"),
            models.CheckConstraint(condition=Q(product__in=Product.values), name=f"{prefix}_product_valid"),
            models.CheckConstraint(
                condition=Q(opened_on__lte=models.F("delinquent_since"), delinquent_since__lte=models.F("as_of")),
                name=f"{prefix}_dates_ordered",
            ),
            models.CheckConstraint(
                condition=(
                    Q(status__in=[RecordStatus.SETTLED, RecordStatus.WRITTEN_OFF], settled_on__isnull=False)
                    | Q(status__in=[RecordStatus.DELINQUENT, RecordStatus.RESTRUCTURED], settled_on__isnull=True)
                ),
                name=f"{prefix}_settled_on_rule",
            ),
        ]

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class RecordQuerySet(models.QuerySet):
    def visible_for_inquiry(self, subject_token: str, now: datetime | None = None) -> RecordQuerySet:
        """Current, non-withdrawn records of a subject, without those suppressed by an overdue dispute."""
        now = now or timezone.now()
        open_disputes = Dispute.objects.filter(record=OuterRef("pk"), status=DisputeStatus.OPEN)
        return (
            self.filter(subject_token=subject_token, withdrawn_at__isnull=True)
            .annotate(disputed=Exists(open_disputes), suppressed=Exists(open_disputes.filter(due_at__lte=now)))
            .filter(suppressed=False)
        )

    def with_disputed(self) -> RecordQuerySet:
        return self.annotate(disputed=Exists(Dispute.objects.filter(record=OuterRef("pk"), status=DisputeStatus.OPEN)))


class Record(RecordData):
    """The current state of one loan as reported by one member (its newest version)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="records")
    reference_index = models.CharField(max_length=64, help_text="blind index of the member's loan reference")
    member_reference = EncryptedTextField()
    version = models.PositiveIntegerField(default=1)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdraw_reason = EncryptedTextField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RecordQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["member", "reference_index"], name="record_reference_unique"),
            *RecordData.data_constraints("record"),
        ]
        indexes = [
            models.Index(fields=["subject_token"], name="record_subject_idx"),
            models.Index(fields=["member", "-created_at", "-id"], name="record_member_created_idx"),
            models.Index(fields=["status", "settled_on"], name="record_status_settled_idx"),
        ]

    def __str__(self) -> str:
        return f"record {self.id} v{self.version}"

    @property
    def withdrawn(self) -> bool:
        return self.withdrawn_at is not None


def reciprocity_cutoff(now: datetime) -> datetime | None:
    """The reciprocity rule: a member may query only if it furnished a record version at or after
    this moment (EXCHANGE_RECIPROCITY_DAYS before `now`). None when the rule is off."""
    days = settings.EXCHANGE_RECIPROCITY_DAYS
    return now - timedelta(days=days) if days > 0 else None


class RecordVersion(RecordData):
    """One submitted version of a record; the full history is kept until retention ends."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    record = models.ForeignKey(Record, on_delete=models.CASCADE, related_name="versions")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    version = models.PositiveIntegerField()
    submission_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["record", "version"], name="record_version_unique"),
            *RecordData.data_constraints("record_version"),
        ]
        indexes = [models.Index(fields=["member", "created_at"], name="record_version_member_idx")]

    def __str__(self) -> str:
        return f"record {self.record_id} v{self.version}"


class Purpose(models.TextChoices):
    CREDIT_APPLICATION = "credit_application", "Credit application"
    CREDIT_LINE_REVIEW = "credit_line_review", "Credit line review"
    POST_LOAN_MANAGEMENT = "post_loan_management", "Post-loan management"
    GUARANTEE_REVIEW = "guarantee_review", "Guarantee review"


class Channel(models.TextChoices):
    APP = "app", "App"
    WEB = "web", "Web"
    PAPER = "paper", "Paper"
    RECORDED_CALL = "recorded_call", "Recorded call"


class ConsentStatus(models.TextChoices):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class Consent(models.Model):
    """A borrower's authorisation for one member to query for one purpose, until it expires."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="consents")
    subject_token = models.CharField(max_length=64)
    id_type = models.CharField("ID type", max_length=12, choices=IdType.choices)
    purpose = models.CharField(max_length=24, choices=Purpose.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    evidence_sha256 = models.CharField("evidence SHA-256", max_length=64)
    granted_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("granted_at")), name="consent_expires_after_grant"
            ),
            models.CheckConstraint(condition=Q(purpose__in=Purpose.values), name="consent_purpose_valid"),
            models.CheckConstraint(condition=Q(channel__in=Channel.values), name="consent_channel_valid"),
        ]
        indexes = [
            models.Index(fields=["subject_token", "member"], name="consent_subject_idx"),
            models.Index(fields=["member", "-created_at", "-id"], name="consent_member_created_idx"),
            # The evidence-reuse check: this member's consents with one evidence hash.
            models.Index(fields=["member", "evidence_sha256"], name="consent_evidence_idx"),
        ]

    def __str__(self) -> str:
        return f"consent {self.id}"

    def status_at(self, now: datetime | None = None) -> str:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return ConsentStatus.REVOKED
        if self.expires_at <= now:
            return ConsentStatus.EXPIRED
        return ConsentStatus.ACTIVE

    @property
    def status(self) -> str:
        return self.status_at()

    def refusal_for(self, *, member: Member, subject_token: str, purpose: str, now: datetime | None = None) -> str:
        """Why this consent does not allow the inquiry ('' when it does)."""
        if self.member_id != member.pk:
            return "not_found"
        if self.subject_token != subject_token:
            return "other_subject"
        if self.purpose != purpose:
            return "other_purpose"
        status = self.status_at(now)
        if status != ConsentStatus.ACTIVE:
            return status
        if self.granted_at > (now or timezone.now()):
            return "not_yet_granted"
        return ""


class Inquiry(models.Model):
    """A member's query on a subject; its result is kept so it can be re-read and disputed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="inquiries")
    subject_token = models.CharField(max_length=64)
    consent = models.ForeignKey(Consent, on_delete=models.SET_NULL, null=True, related_name="inquiries")
    purpose = models.CharField(max_length=24, choices=Purpose.choices)
    created_at = models.DateTimeField(default=timezone.now)
    result = models.JSONField(default=dict)
    # Record ids by line, never shown: a dispute names a line, the exchange finds the record.
    line_records = models.JSONField(default=list)

    class Meta:
        verbose_name_plural = "inquiries"
        indexes = [
            models.Index(fields=["subject_token", "created_at"], name="inquiry_subject_idx"),
            models.Index(fields=["member", "-created_at", "-id"], name="inquiry_member_created_idx"),
            # The compliance rules count every member's distinct subjects per hour over a time range:
            # the range is read from this index alone (no INCLUDE: SQLite has none).
            models.Index(fields=["created_at", "member", "subject_token"], name="inquiry_created_idx"),
        ]

    def __str__(self) -> str:
        return f"inquiry {self.id}"


class DisputeStatus(models.TextChoices):
    OPEN = "open"
    RESOLVED = "resolved"


class DisputeOutcome(models.TextChoices):
    CORRECTED = "corrected"
    DELETED = "deleted"
    UPHELD = "upheld"


class Dispute(models.Model):
    """A borrower's objection to one line of a report, answered by the furnisher before `due_at`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    record = models.ForeignKey(Record, on_delete=models.CASCADE, related_name="disputes")
    subject_token = models.CharField(max_length=64)
    inquiry = models.ForeignKey(Inquiry, on_delete=models.SET_NULL, null=True, blank=True, related_name="disputes")
    line = models.PositiveIntegerField(null=True, blank=True)
    filed_by = models.ForeignKey(Member, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    filed_by_staff = models.CharField(max_length=150, blank=True)
    reason = EncryptedTextField()
    note = EncryptedTextField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=DisputeStatus.choices, default=DisputeStatus.OPEN)
    outcome = models.CharField(max_length=12, choices=DisputeOutcome.choices, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(status=DisputeStatus.OPEN, outcome="", resolved_at__isnull=True)
                    | Q(status=DisputeStatus.RESOLVED, outcome__in=DisputeOutcome.values, resolved_at__isnull=False)
                ),
                name="dispute_resolution_consistent",
            ),
        ]
        indexes = [
            models.Index(fields=["record", "status"], name="dispute_record_idx"),
            models.Index(fields=["status", "due_at"], name="dispute_due_idx"),
            models.Index(fields=["opened_at"], name="dispute_opened_idx"),  # disputes filed per day
        ]

    def __str__(self) -> str:
        return f"dispute {self.id}"


class IdempotencyKey(models.Model):
    """A member's `Idempotency-Key`: the first response is replayed for a retry with the same body.

    The request's fingerprint is a keyed digest (core.tokens.keyed_digest), and the response is
    stored encrypted with the field keys, bound to this table, column and row
    (exchange/idempotency.py): it holds member references and subject data.
    """

    id = models.BigAutoField(primary_key=True)
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    completed = models.BooleanField(default=False)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_sealed = SealedBinaryField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["member", "key"], name="idempotency_key_unique")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return f"idempotency key {self.pk}"


# --- bulk submissions (exchange/bulk/) ------------------------------------------------------


class SubmissionStatus(models.TextChoices):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class SubmissionErrorCode(models.TextChoices):
    """Why a bulk file failed as a whole (`error_code`); `error` says it in words."""

    MALFORMED_REQUEST = "malformed_request", "the file is not readable CSV or JSON Lines"
    TOO_MANY_ERRORS = "too_many_errors", "more rejected rows than EXCHANGE_MAX_ROW_ERRORS"
    MEMBER_SUSPENDED = "member_suspended", "the member was suspended before the file was processed"
    PROCESSING_FAILED = "processing_failed", "processing failed repeatedly"
    RAW_IDENTIFIER_REFUSED = "raw_identifier_refused", "raw IDs sent to an exchange that takes blind ones only"


class SubmissionFormat(models.TextChoices):
    CSV = "csv"
    JSONL = "jsonl"


class Submission(models.Model):
    """A bulk file of records, stored as uploaded and processed in chunks by a worker.

    `next_offset`/`next_line` say where the next unprocessed row starts; they move in the same
    transaction as the rows of each chunk, so a killed worker resumes there and stores no row twice.
    A worker holds a lease (`lease_owner` until `lease_expires_at`, renewed with every chunk).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="submissions")
    actor = models.CharField(max_length=120, help_text="audit actor of the upload")
    format = models.CharField(max_length=8, choices=SubmissionFormat.choices)
    # HMAC-SHA256, under a key derived for this purpose and scoped to the member, of the file's
    # SHA-256 (core.tokens.keyed_digest): finds a resubmitted file, and unlike a plain hash cannot
    # be checked against guessed files (a known template with a resident ID, issue #18).
    file_digest = models.CharField(max_length=64)
    size = models.BigIntegerField(help_text="bytes")
    # Relative to EXCHANGE_SUBMISSIONS_DIR for uploads (deleted once processed: it holds raw
    # identifiers); absolute for `import_records`, whose file is the operator's and is kept.
    file_name = models.CharField(max_length=500)
    file_owned = models.BooleanField(default=True)
    status = models.CharField(max_length=12, choices=SubmissionStatus.choices, default=SubmissionStatus.QUEUED)
    total = models.BigIntegerField(default=0, help_text="data rows: an upper-bound estimate until completed")
    accepted = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    next_offset = models.BigIntegerField(default=0, help_text="byte offset of the next unprocessed row")
    next_line = models.BigIntegerField(default=0, help_text="physical lines consumed so far")
    error = models.CharField(max_length=300, blank=True, help_text="why the file failed; never personal data")
    error_code = models.CharField(max_length=32, blank=True, choices=SubmissionErrorCode.choices)
    lease_owner = models.CharField(max_length=120, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="claims by a worker; capped against a crash loop")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["member", "file_digest"], name="submission_file_unique"),
            models.CheckConstraint(condition=Q(status__in=SubmissionStatus.values), name="submission_status_valid"),
            models.CheckConstraint(condition=Q(format__in=SubmissionFormat.values), name="submission_format_valid"),
            models.CheckConstraint(
                condition=Q(accepted__gte=0, rejected__gte=0, total__gte=0, next_offset__gte=0),
                name="submission_counts_non_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "-created_at", "-id"], name="submission_member_created_idx"),
            models.Index(fields=["status", "lease_expires_at"], name="submission_status_idx"),
        ]

    def __str__(self) -> str:
        return f"submission {self.id}"

    @property
    def processed(self) -> int:
        return self.accepted + self.rejected

    @property
    def finished(self) -> bool:
        return self.status in (SubmissionStatus.COMPLETED, SubmissionStatus.FAILED)


class SubmissionError(models.Model):
    """One problem with one row of a bulk file. Messages never quote a value of the row."""

    id = models.BigAutoField(primary_key=True)
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="errors")
    line = models.BigIntegerField(help_text="physical line where the row starts, 1-based")
    field = models.CharField(max_length=100, blank=True)
    message = models.CharField(max_length=300)

    def __str__(self) -> str:
        return f"submission {self.submission_id} line {self.line}"


# Consent assurance and compliance alerts live in their own module (exchange/alerts.py, evidence.py).
from exchange.compliance_models import (  # noqa: E402, F401 - registers the models
    AlertKind,
    AlertStatus,
    ComplianceAlert,
    EvidenceRequest,
    EvidenceStatus,
    InquiryHour,
    RolledUpHour,
    evidence_status_q,
)
